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
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core.errors import ApplicationError
from superapp.core.prepared import PreparedStatement

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
    ascending id order in one ``SELECT ... FOR UPDATE``, checks that each leg is in its account's
    currency and that no non-negative account would go below zero (raising
    :class:`InsufficientFunds` with nothing written; the database CHECK is the backstop), writes
    the entry and its postings, and moves the balances. On PostgreSQL all of
    it is one statement (:func:`ledger_post_rows`); elsewhere the ORM, with ``F()`` expressions.

    Raises:
        ValueError: the legs are malformed, an account does not exist, or a leg's currency is not
            its account's (a programming error, never user input; nothing was written).
        InsufficientFunds: a wallet or escrow account would go negative.
    """
    deltas = _checked_deltas(
        "ledger_post", [(leg.account.id, leg.amount, leg.account.currency) for leg in legs]
    )

    if connection.vendor == "postgresql":
        now = timezone.now()
        entry_id = ledger_post_rows(
            kind=kind,
            reference=reference,
            memo=memo,
            legs=[(leg.account.id, leg.amount, leg.account.currency) for leg in legs],
            now=now,
        )
        entry = JournalEntry(id=entry_id, kind=kind, reference=reference, memo=memo, created_at=now)
        entry._state.adding, entry._state.db = False, connection.alias
        return entry

    locked = {
        a.id: a
        for a in LedgerAccount.objects.select_for_update().filter(id__in=sorted(deltas)).order_by("id")
    }
    _check_currencies(legs, {a.id: a.currency for a in locked.values()})
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


# One entry in one statement (PostgreSQL), what ledger_post did in 5 or more: lock the accounts in
# ascending id order (`locked`: its FOR UPDATE returns each row as last committed, after waiting
# for its lock), check that every leg is in its account's currency and that no non-negative
# account goes below zero (`ok`: it reads every locked row, so every lock is taken before anything
# is written), then, only if both hold, move the balances and insert the entry and its postings.
# All or nothing: when `ok` fails nothing is written, so a caller may catch InsufficientFunds and
# go on. The new balance is computed from `locked`'s row (the last committed version, which we
# hold), never from the UPDATE's own scan: that one reads the statement's snapshot, possibly
# older, and PostgreSQL checks CHECK constraints on the new row before it finds out that the row
# moved on (a test with 10 threads on 4 wallets hit spurious `ledger_account_non_negative`
# violations that way). The CHECK constraints and the deferred zero-sum trigger still apply (the
# trigger sums postings per currency, so without the currency check an entry moving CNY against
# USD would pass it). `{extra}`: more CTEs of the caller's (a business row inserted in the same
# round trip).
_POST_SQL = """
WITH locked AS MATERIALIZED (
    SELECT id, kind, currency, balance FROM payments_ledgeraccount
     WHERE id = ANY(%(lock_ids)s::bigint[]) ORDER BY id FOR UPDATE
), delta AS (
    SELECT account_id, currency, sum(amount)::bigint AS amount
      FROM unnest(%(accounts)s::bigint[], %(amounts)s::bigint[], %(currencies)s::text[])
           AS l(account_id, amount, currency)
     GROUP BY account_id, currency
), ok AS MATERIALIZED (
    SELECT count(*) AS found,
           coalesce(bool_and(d.currency = l.currency), false) AS same_currency,
           coalesce(bool_and(l.balance + d.amount >= 0 OR NOT (l.kind = ANY(%(non_negative)s::text[]))), false)
           AND bool_and(d.currency = l.currency) AND count(*) = %(n)s AS funded
      FROM locked l JOIN delta d ON d.account_id = l.id
), moved AS (
    UPDATE payments_ledgeraccount AS a SET balance = l.balance + d.amount
      FROM locked l JOIN delta d ON d.account_id = l.id, ok
     WHERE ok.funded AND a.id = l.id AND d.amount <> 0
    RETURNING a.id
), entry AS (
    INSERT INTO payments_journalentry (kind, reference, memo, created_at)
    SELECT %(kind)s, %(reference)s, %(memo)s, %(now)s FROM ok WHERE ok.funded
    RETURNING id
), postings AS (
    INSERT INTO payments_posting (entry_id, account_id, amount, currency)
    SELECT entry.id, l.account_id, l.amount, l.currency
      FROM entry, unnest(%(accounts)s::bigint[], %(amounts)s::bigint[], %(currencies)s::text[])
           WITH ORDINALITY AS l(account_id, amount, currency, n)
     ORDER BY l.n
){extra}
SELECT (SELECT found FROM ok), (SELECT same_currency FROM ok), (SELECT id FROM entry), (SELECT count(*) FROM moved)
"""


@functools.cache
def _post_statement(extra_sql: str) -> PreparedStatement:
    """``_POST_SQL`` with a caller's CTEs, prepared once per connection (one per caller's text)."""
    return PreparedStatement("ledger_post", _POST_SQL.replace("{extra}", extra_sql))


def ledger_post_rows(
    *,
    kind: str,
    reference: str,
    memo: str,
    legs: Sequence[tuple[int, int, str]],
    now: datetime,
    extra_sql: str = "",
    extra_params: dict[str, Any] | None = None,
) -> int:
    """PostgreSQL: :func:`ledger_post` in one round trip, for legs given as ``(account_id,
    amount, currency)``; returns the entry's id. The caller holds the transaction.

    ``extra_sql``: further CTEs (``, name AS (INSERT ...)``) run in the same statement with
    ``extra_params``; the CTE ``ok`` (column ``funded``) tells whether the entry is booked, so a
    business row can be inserted ``... FROM ok WHERE ok.funded``.

    Raises:
        ValueError: the legs are malformed, an account does not exist, or a leg's currency is not
            its account's (nothing was written).
        InsufficientFunds: a wallet or escrow account would go negative (nothing was written).
    """
    net = _checked_deltas("ledger_post_rows", legs)
    lock_ids = sorted({leg[0] for leg in legs})
    params = {
        "lock_ids": lock_ids,
        "n": len(lock_ids),
        "accounts": [leg[0] for leg in legs],
        "amounts": [leg[1] for leg in legs],
        "currencies": [leg[2] for leg in legs],
        "non_negative": [str(k) for k in NON_NEGATIVE_KINDS],
        "kind": kind,
        "reference": reference,
        "memo": memo,
        "now": now,
        **(extra_params or {}),
    }
    with connection.cursor() as cursor:
        _post_statement(extra_sql).execute(cursor, params)
        found, same_currency, entry_id, moved = cursor.fetchone()
    if found and not same_currency:  # (an account with legs in two currencies: a row for each)
        raise ValueError(f"a leg's currency is not its account's: {list(legs)}")
    if found != len(lock_ids):
        raise ValueError(f"unknown ledger account among {lock_ids}")
    if entry_id is None:
        raise InsufficientFunds()
    expected = sum(1 for total in net.values() if total)
    if moved != expected:  # never seen; the caller's transaction must not commit a half entry
        raise RuntimeError(f"entry {entry_id} moved {moved} balances of {expected}")
    return entry_id


def _check_currencies(legs: Sequence[Leg], currencies: dict[int, str]) -> None:
    """Other databases: every leg's account exists (``currencies``: id -> its currency, as stored)
    and the leg is in that currency."""
    ids = sorted({leg.account.id for leg in legs})
    if set(currencies) != set(ids):
        raise ValueError(f"unknown ledger account among {ids}")
    if any(currencies[leg.account.id] != leg.account.currency for leg in legs):
        raise ValueError(f"a leg's currency is not its account's: {list(legs)}")


def _checked_deltas(caller: str, legs: Sequence[tuple[int, int, str]]) -> dict[int, int]:
    """Check legs given as ``(account_id, amount, currency)`` (inside a transaction, at least
    two, non-zero integer amounts summing to zero per currency: a failure is a programming error,
    never user input) and return each account's net amount."""
    if not connection.in_atomic_block:
        raise RuntimeError(f"{caller}() must run inside a transaction")
    if len(legs) < 2:
        raise ValueError("an entry needs at least two legs")
    sums: dict[str, int] = defaultdict(int)
    net: dict[int, int] = defaultdict(int)
    for account_id, amount, currency in legs:
        if type(amount) is not int or amount == 0:
            raise ValueError(f"leg amounts are non-zero integers, got {amount!r}")
        sums[currency] += amount
        net[account_id] += amount
    if any(sums.values()):
        raise ValueError(f"legs do not balance: {dict(sums)}")
    return net


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


# --- an entry booked in two halves (red-packet grabs) -----------------------------------------


@dataclass(frozen=True)
class BookedEntry:
    """An entry whose postings are written and whose balances :func:`ledger_balances_apply` has
    still to move (``deltas``: account id -> signed minor units), in the same transaction."""

    entry_id: int
    deltas: dict[int, int]


def ledger_entry_book(*, kind: str, reference: str, legs: Sequence[Leg], memo: str = "") -> BookedEntry:
    """The first half of :func:`ledger_post`: write the entry and its postings (one statement on
    PostgreSQL), lock nothing, move no balance.

    For a service whose accounts are hot rows (a red packet's escrow: every grab of the packet
    debits it): it books first, then takes its hot locks and calls :func:`ledger_balances_apply`
    just before committing, so that the rows stay locked for one statement and the commit. The
    caller MUST apply the returned deltas in the same transaction, and roll the booking back if
    that raises (until then the balances lag the postings; nobody outside the transaction can see
    it, and the deferred balance trigger checks the postings at commit).

    Raises:
        ValueError: the legs are malformed (as in :func:`ledger_post`), an account does not
            exist, or a leg's currency is not its account's (nothing was written).
    """
    deltas = _checked_deltas(
        "ledger_entry_book", [(leg.account.id, leg.amount, leg.account.currency) for leg in legs]
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _BOOK.execute(
                cursor,
                {
                    "kind": kind,
                    "reference": reference,
                    "memo": memo,
                    "now": timezone.now(),
                    "accounts": [leg.account.id for leg in legs],
                    "amounts": [leg.amount for leg in legs],
                    "currencies": [leg.account.currency for leg in legs],
                },
            )
            row = cursor.fetchone()
        if row is None:  # refused: tell why (a programming error, so the cost does not matter)
            _check_currencies(
                legs, dict(LedgerAccount.objects.filter(id__in=deltas).values_list("id", "currency"))
            )
            raise RuntimeError(f"entry {reference!r} was not booked")  # never seen
        entry_id = row[0]
    else:
        _check_currencies(
            legs, dict(LedgerAccount.objects.filter(id__in=deltas).values_list("id", "currency"))
        )
        entry = JournalEntry.objects.create(kind=kind, reference=reference, memo=memo)
        Posting.objects.bulk_create(
            [
                Posting(
                    entry=entry, account_id=leg.account.id, amount=leg.amount, currency=leg.account.currency
                )
                for leg in legs
            ]
        )
        entry_id = entry.id
    return BookedEntry(entry_id=entry_id, deltas={a: d for a, d in deltas.items() if d})


# The entry, only if every leg's account exists and the leg is in its currency (each account read
# by primary key, no lock: an account's currency never changes); its postings, only if the entry
# was written. A refused booking writes nothing and returns no row.
_BOOK_SQL = """
WITH entry AS (
    INSERT INTO payments_journalentry (kind, reference, memo, created_at)
    SELECT %(kind)s, %(reference)s, %(memo)s, %(now)s
     WHERE NOT EXISTS (
        SELECT FROM unnest(%(accounts)s::bigint[], %(currencies)s::text[]) AS v(account_id, currency)
          LEFT JOIN payments_ledgeraccount a ON a.id = v.account_id
         WHERE a.currency IS DISTINCT FROM v.currency)
    RETURNING id
)
INSERT INTO payments_posting (entry_id, account_id, amount, currency)
SELECT entry.id, v.account_id, v.amount, v.currency
  FROM entry, unnest(%(accounts)s::bigint[], %(amounts)s::bigint[], %(currencies)s::text[])
       AS v(account_id, amount, currency)
RETURNING entry_id
"""
_BOOK = PreparedStatement("ledger_book", _BOOK_SQL)

# Lock the accounts in ascending id order, computing each new balance from the locked row (its last
# committed version: the materialized CTE takes every lock before the UPDATE reaches a row), then
# move them only if every account is found and none that must stay non-negative goes below zero:
# the gate reads all of `locked` before the first write, so it is all or nothing, as `_POST_SQL`;
# a refused apply returns no row. Not the UPDATE's own scan: it reads the statement's snapshot, and
# PostgreSQL checks CHECK constraints on a row computed from that snapshot before it notices the
# row moved on (see `ledger_post`'s statement).
_APPLY_SQL = """
WITH locked AS MATERIALIZED (
    SELECT l.id, l.balance + v.delta AS balance,
           l.balance + v.delta >= 0 OR NOT (l.kind = ANY(%(non_negative)s::text[])) AS funded
      FROM payments_ledgeraccount l
      JOIN unnest(%(ids)s::bigint[], %(deltas)s::bigint[]) AS v(account_id, delta) ON v.account_id = l.id
     ORDER BY l.id FOR UPDATE OF l
)
UPDATE payments_ledgeraccount AS a SET balance = l.balance
  FROM locked l
 WHERE a.id = l.id AND (SELECT bool_and(funded) AND count(*) = %(n)s FROM locked)
RETURNING a.id
"""
_APPLY = PreparedStatement("ledger_apply", _APPLY_SQL)


def ledger_balances_apply(*, booked: Sequence[BookedEntry]) -> None:
    """The second half: lock the entries' accounts in ascending id order and move their balances
    (one statement on PostgreSQL). Call it as late as the transaction allows (see
    :func:`ledger_entry_book`). All or nothing: when it raises, no balance has moved.

    Raises:
        InsufficientFunds: a wallet or escrow account would go negative (no balance was moved,
            but the entries booked by :func:`ledger_entry_book` were written: the caller must
            roll them back, as raising out of its transaction does).
        ValueError: an account does not exist.
    """
    deltas: dict[int, int] = defaultdict(int)
    for entry in booked:
        for account_id, delta in entry.deltas.items():
            deltas[account_id] += delta
    ids = sorted(a for a, d in deltas.items() if d)
    if not ids:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _APPLY.execute(
                cursor,
                {
                    "ids": ids,
                    "deltas": [deltas[a] for a in ids],
                    "n": len(ids),
                    "non_negative": [str(k) for k in NON_NEGATIVE_KINDS],
                },
            )
            moved = len(cursor.fetchall())
        if moved == len(ids):
            return
        if moved:  # never seen (the gate is all or nothing); the caller must not commit half of it
            raise RuntimeError(f"moved {moved} balances of {len(ids)}")
        if LedgerAccount.objects.filter(id__in=ids).count() != len(ids):
            raise ValueError(f"unknown ledger account among {ids}")
        raise InsufficientFunds()
    locked = {a.id: a for a in LedgerAccount.objects.select_for_update().filter(id__in=ids).order_by("id")}
    if set(locked) != set(ids):
        raise ValueError(f"unknown ledger account among {ids}")
    for account_id in ids:
        account = locked[account_id]
        if account.kind in NON_NEGATIVE_KINDS and account.balance + deltas[account_id] < 0:
            raise InsufficientFunds()
    for account_id in ids:
        LedgerAccount.objects.filter(pk=account_id).update(balance=F("balance") + deltas[account_id])
