"""Payments fixtures: funded wallets, PINs."""

from __future__ import annotations

import pytest

from payments import services
from payments.ledger import ledger_reconcile

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


# --- the ledger reconciles after every test that touched the database ---------------------------

_DB_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}


@pytest.fixture(autouse=True)
def _ledger_reconciles(request):
    """After each test with database access, ``ledger_reconcile()`` must pass: every entry
    balanced, every balance equal to its postings. Stronger than once per module: a test that
    breaks an invariant is named. A test that corrupts the ledger on purpose requests
    ``ledger_drift_expected``."""
    uses_db = request.node.get_closest_marker("django_db") is not None or bool(
        _DB_FIXTURES & set(request.fixturenames)
    )
    if uses_db:
        # Set up the database first, so that this teardown runs before its rollback/flush.
        request.getfixturevalue("_django_db_helper")
    yield
    if uses_db and "ledger_drift_expected" not in request.fixturenames:
        run = ledger_reconcile()
        assert run.ok, f"the ledger does not reconcile after this test: {run.mismatches}"


@pytest.fixture
def ledger_drift_expected():
    """This test corrupts balances on purpose; skip the reconciliation after it."""
