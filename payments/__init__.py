"""Wallet, double-entry ledger, Stripe, transfers, red packets. Not built yet."""
