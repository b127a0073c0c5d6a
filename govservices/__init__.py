"""Catalogue of public services. Not built yet."""
