"""Accounts: users, auth (JWT sessions), profiles, contacts (friends, requests, tags, blocks).

Other apps use only :mod:`accounts.services` and :mod:`accounts.selectors`.
"""
