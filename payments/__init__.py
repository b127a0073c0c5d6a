"""Wallet on a double-entry ledger, PIN, limits, top-ups (sandbox or Stripe), transfers, red packets (docs/payments.md)."""
