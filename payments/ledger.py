"""The double-entry ledger: posting entries, system accounts, reconciliation.

Locking order (the one rule that keeps concurrent money movements free of deadlocks): every
transaction that moves money locks the :class:`LedgerAccount` rows it touches **in ascending id
order, in one query**, before anything else that it locks (event stream heads come last, via
``superapp.core.events.publish``). Two transfers between the same wallets in opposite directions
therefore queue on the lower id instead of each holding one row and waiting for the other.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from superapp.core.errors import ApplicationError

from .models import NON_NEGATIVE_KINDS, AccountKind, JournalEntry, LedgerAccount, Posting, ReconciliationRun

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# SQLSTATEs worth retrying: serialization_failure, deadlock_detected, lock_not_available.
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}
MONEY_RETRIES = 5


class InsufficientFunds(ApplicationError):
    default_code = "insufficient_funds"

    def __init__(self) -> None:
        super().__init__(_("Your balance is not enough for this payment."))


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def money_atomic(func: Callable[P, R]) -> Callable[P, R]:
    """Run a public money service in ``atomic(durable=True)``, retrying lock failures.

    A deadlock or serialization failure rolls the whole attempt back (and drops its on-commit
    callbacks), so running it again is safe; after ``MONEY_RETRIES`` attempts the error surfaces.
    Durable: a money service can never be nested in (and rolled back with) a caller's transaction.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(MONEY_RETRIES):
            try:
                with transaction.atomic(durable=True):
                    return func(*args, **kwargs)
            except OperationalError as exc:
                if _sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == MONEY_RETRIES - 1:
                    raise
                logger.warning("payments.retry", extra={"service": func.__name__, "sqlstate": _sqlstate(exc)})
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper


def default_currency() -> str:
    return settings.PAYMENTS_DEFAULT_CURRENCY


def account_for(*, kind: str, owner_id: int | None = None, currency: str | None = None) -> LedgerAccount:
    """The account of that kind (and owner) in that currency, created on first use.

    Creating is race-free: ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (kind, owner,
    currency), then a read. Does not lock; :func:`ledger_post` does.
    """
    currency = currency or default_currency()
    account = LedgerAccount.objects.filter(kind=kind, owner_id=owner_id, currency=currency).first()
    if account is None:
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=kind, owner_id=owner_id, currency=currency)], ignore_conflicts=True
        )
        account = LedgerAccount.objects.get(kind=kind, owner_id=owner_id, currency=currency)
    return account


def wallet_for(*, user_id: int, currency: str | None = None) -> LedgerAccount:
    return account_for(kind=AccountKind.WALLET, owner_id=user_id, currency=currency)


@dataclass(frozen=True)
class Leg:
    """``amount`` (signed minor units) added to ``account``."""

    account: LedgerAccount
    amount: int


def accounts_lock(*, account_ids: Sequence[int]) -> None:
    """Lock accounts in ascending id order in one query, for a transaction that will post
    several entries (each :func:`ledger_post` then re-locks rows it already holds)."""
    list(
        LedgerAccount.objects.select_for_update()
        .filter(id__in=sorted(set(account_ids)))
        .order_by("id")
        .values_list("id")
    )


def ledger_post(*, kind: str, reference: str, legs: Sequence[Leg], memo: str = "") -> JournalEntry:
    """Book one journal entry and update the balances of its accounts.

    The caller holds the transaction (a :func:`money_atomic` service). Locks the accounts in
    ascending id order in one ``SELECT ... FOR UPDATE``, checks that no non-negative account would
    go below zero (raising :class:`InsufficientFunds`; the database CHECK is the backstop), writes
    the entry and its postings, and moves the balances with ``F()`` expressions.

    Raises:
        ValueError: the legs are malformed (a programming error, never user input).
        InsufficientFunds: a wallet or escrow account would go negative.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("ledger_post() must run inside a transaction")
    if len(legs) < 2:
        raise ValueError("an entry needs at least two legs")
    sums: dict[str, int] = defaultdict(int)
    deltas: dict[int, int] = defaultdict(int)
    for leg in legs:
        if type(leg.amount) is not int or leg.amount == 0:
            raise ValueError(f"leg amounts are non-zero integers, got {leg.amount!r}")
        sums[leg.account.currency] += leg.amount
        deltas[leg.account.id] += leg.amount
    if any(sums.values()):
        raise ValueError(f"legs do not balance: {dict(sums)}")

    locked = {
        a.id: a
        for a in LedgerAccount.objects.select_for_update().filter(id__in=sorted(deltas)).order_by("id")
    }
    for account_id, delta in deltas.items():
        account = locked[account_id]
        if account.kind in NON_NEGATIVE_KINDS and account.balance + delta < 0:
            raise InsufficientFunds()

    entry = JournalEntry.objects.create(kind=kind, reference=reference, memo=memo)
    Posting.objects.bulk_create(
        [
            Posting(entry=entry, account_id=leg.account.id, amount=leg.amount, currency=leg.account.currency)
            for leg in legs
        ]
    )
    for account_id in sorted(deltas):
        if deltas[account_id]:
            LedgerAccount.objects.filter(pk=account_id).update(balance=F("balance") + deltas[account_id])
    return entry


# --- reconciliation ---------------------------------------------------------------------------

_UNBALANCED_SQL = """
SELECT entry_id, currency, SUM(amount) FROM payments_posting
 GROUP BY entry_id, currency HAVING SUM(amount) <> 0 ORDER BY entry_id LIMIT 100
"""
_THIN_SQL = """
SELECT e.id FROM payments_journalentry e LEFT JOIN payments_posting p ON p.entry_id = e.id
 GROUP BY e.id HAVING COUNT(p.id) < 2 ORDER BY e.id LIMIT 100
"""
_DRIFT_SQL = """
SELECT a.id, a.balance, COALESCE(s.total, 0) FROM payments_ledgeraccount a
  LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM payments_posting GROUP BY account_id) s
    ON s.account_id = a.id
 WHERE a.balance <> COALESCE(s.total, 0) ORDER BY a.id LIMIT 100
"""
_TOTALS_SQL = "SELECT currency, SUM(amount) FROM payments_posting GROUP BY currency HAVING SUM(amount) <> 0"


def ledger_reconcile() -> ReconciliationRun:
    """Prove the ledger's invariants and record the outcome (mismatches are logged as errors).

    Checks: every entry's postings sum to zero per currency and there are at least two; all
    postings sum to zero per currency; each account's balance equals the sum of its postings.
    Reads one consistent snapshot (REPEATABLE READ) so concurrent payments cannot look like drift.
    """
    mismatches: list[dict[str, Any]] = []
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if snapshot:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(_UNBALANCED_SQL)
        mismatches += [
            {"check": "entry_unbalanced", "entry_id": e, "currency": c, "sum": int(s)}
            for e, c, s in cursor.fetchall()
        ]
        cursor.execute(_THIN_SQL)
        mismatches += [{"check": "entry_without_two_postings", "entry_id": e} for (e,) in cursor.fetchall()]
        cursor.execute(_TOTALS_SQL)
        mismatches += [
            {"check": "currency_total_not_zero", "currency": c, "sum": int(s)} for c, s in cursor.fetchall()
        ]
        cursor.execute(_DRIFT_SQL)
        mismatches += [
            {"check": "balance_drift", "account_id": a, "balance": int(b), "postings_sum": int(s)}
            for a, b, s in cursor.fetchall()
        ]
        accounts = LedgerAccount.objects.count()
        entries = JournalEntry.objects.count()
    run = ReconciliationRun.objects.create(
        ok=not mismatches, accounts_checked=accounts, entries_checked=entries, mismatches=mismatches
    )
    if mismatches:
        logger.error(
            "payments.reconciliation_mismatch", extra={"run_id": run.id, "mismatches": mismatches[:20]}
        )
    return run
