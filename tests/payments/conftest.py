"""Payments fixtures: funded wallets, PINs."""

from __future__ import annotations

import pytest

from payments import services

PIN = "123456"


def fund(user, amount: int) -> None:
    """Top the user's wallet up through the sandbox provider (the real path)."""
    services.top_up_create(user_id=user.pk, amount=amount)


def with_pin(user, pin: str = PIN) -> None:
    services.pin_set(user_id=user.pk, pin=pin)


@pytest.fixture
def payer(alice):
    with_pin(alice)
    fund(alice, 10_000)
    return alice
