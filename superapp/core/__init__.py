"""Shared plumbing only, no domain logic: events, errors, pagination, logging, health."""
