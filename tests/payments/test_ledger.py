"""The ledger: postings, balances, database guards, reconciliation, property tests."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments import tasks
from payments.ledger import (
    InsufficientFunds,
    Leg,
    account_for,
    ledger_balances_apply,
    ledger_entry_book,
    ledger_post,
    ledger_post_rows,
    ledger_reconcile,
    wallet_for,
)
from payments.models import AccountKind, JournalEntry, LedgerAccount, Posting, ReconciliationRun

from .conftest import fund


def _clearing():
    return account_for(kind=AccountKind.PROVIDER_CLEARING)


@pytest.mark.django_db
def test_post_moves_balances_and_records_postings(alice):
    wallet, clearing = wallet_for(user_id=alice.pk), _clearing()
    entry = ledger_post(kind="adjustment", reference="t:1", legs=[Leg(clearing, -500), Leg(wallet, 500)])
    wallet.refresh_from_db()
    clearing.refresh_from_db()
    assert (wallet.balance, clearing.balance) == (500, -500)
    assert sorted(entry.postings.values_list("amount", flat=True)) == [-500, 500]
    assert all(p.currency == "CNY" for p in entry.postings.all())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "amounts",
    [[100], [100, -99], [100, 0, -100], [1.5, -1.5], [True, -1]],
    ids=["one", "unbalanced", "zero", "float", "bool"],
)
def test_malformed_legs_are_refused(alice, amounts):
    accounts = [wallet_for(user_id=alice.pk), _clearing(), account_for(kind=AccountKind.FEES)]
    with pytest.raises(ValueError):
        ledger_post(
            kind="adjustment",
            reference="t:x",
            legs=[Leg(a, x) for a, x in zip(accounts, amounts, strict=False)],
        )
    assert not JournalEntry.objects.exists()


@pytest.mark.django_db
def test_a_wallet_cannot_go_negative(alice, bob):
    fund(alice, 100)
    with pytest.raises(InsufficientFunds):
        ledger_post(
            kind="adjustment",
            reference="t:2",
            legs=[Leg(wallet_for(user_id=alice.pk), -101), Leg(wallet_for(user_id=bob.pk), 101)],
        )
    assert LedgerAccount.objects.get(owner=alice).balance == 100


@pytest.mark.django_db
def test_database_check_keeps_wallets_non_negative(alice, ledger_drift_expected):
    wallet = wallet_for(user_id=alice.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=wallet.pk).update(balance=-1)
    # Clearing accounts mirror money outside and may be negative.
    LedgerAccount.objects.filter(pk=_clearing().pk).update(balance=-1)


@pytest.mark.django_db
def test_trigger_rejects_an_unbalanced_entry_at_commit(alice, ledger_drift_expected):
    assert connection.vendor == "postgresql"
    entry = JournalEntry.objects.create(kind="adjustment", reference="bad:1")
    Posting.objects.create(entry=entry, account=wallet_for(user_id=alice.pk), amount=100, currency="CNY")
    Posting.objects.create(entry=entry, account=_clearing(), amount=-99, currency="CNY")
    with pytest.raises(IntegrityError, match="does not balance"), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT would do


@pytest.mark.django_db
def test_trigger_rejects_a_single_posting(alice, ledger_drift_expected):
    entry = JournalEntry.objects.create(kind="adjustment", reference="bad:2")
    Posting.objects.create(entry=entry, account=wallet_for(user_id=alice.pk), amount=100, currency="CNY")
    with pytest.raises(IntegrityError, match="at least two"), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.django_db
def test_postings_and_entries_are_immutable(alice):
    fund(alice, 100)
    posting = Posting.objects.first()
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        Posting.objects.filter(pk=posting.pk).update(amount=1)
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        JournalEntry.objects.update(memo="edited")


@pytest.mark.django_db
def test_reconciliation_passes_on_a_healthy_ledger(alice, bob):
    fund(alice, 700)
    fund(bob, 300)
    run = ledger_reconcile()
    assert run.ok and run.mismatches == []
    assert run.accounts_checked == 3 and run.entries_checked == 2


@pytest.mark.django_db
def test_reconciliation_finds_balance_drift_and_logs_it(alice, caplog, ledger_drift_expected):
    fund(alice, 700)
    LedgerAccount.objects.filter(owner=alice).update(balance=800)  # a bug or a hand edit
    run = ledger_reconcile()
    assert not run.ok
    assert run.mismatches == [
        {
            "check": "balance_drift",
            "account_id": wallet_for(user_id=alice.pk).id,
            "balance": 800,
            "postings_sum": 700,
        }
    ]
    assert any(r.levelname == "ERROR" and r.msg == "payments.reconciliation_mismatch" for r in caplog.records)


@pytest.mark.django_db
def test_reconcile_command_and_task(alice, ledger_drift_expected):
    fund(alice, 100)
    call_command("reconcile_ledger")
    assert tasks.reconcile_ledger.delay().get() is True
    LedgerAccount.objects.filter(owner=alice).update(balance=5)
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="ledger mismatch"):
        call_command("reconcile_ledger")
    assert ReconciliationRun.objects.filter(ok=False).count() == 1


@pytest.mark.django_db
def test_admin_is_read_only_and_surfaces_mismatches(alice, admin_client, ledger_drift_expected):
    fund(alice, 100)
    LedgerAccount.objects.filter(owner=alice).update(balance=5)
    ledger_reconcile()
    response = admin_client.get("/admin/payments/ledgeraccount/")
    assert response.status_code == 200
    assert b"mismatch" in response.content
    entry = JournalEntry.objects.first()
    page = admin_client.get(f"/admin/payments/journalentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert admin_client.get("/admin/payments/journalentry/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/payments/journalentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )


# --- properties ----------------------------------------------------------------------------

moves = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 5_000)), min_size=1, max_size=30
)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(funding=st.lists(st.integers(0, 10_000), min_size=4, max_size=4), steps=moves)
def test_any_sequence_of_moves_keeps_the_invariants(make_user, funding, steps):
    """Whatever moves are tried, money is neither created nor lost, no wallet goes negative and
    every balance equals the sum of its postings."""
    sid = transaction.savepoint()
    try:
        users = [make_user() for _ in range(4)]
        for user, amount in zip(users, funding, strict=True):
            if amount:
                fund(user, amount)
        wallets = [wallet_for(user_id=u.pk) for u in users]
        for n, (src, dst, amount) in enumerate(steps):
            if src == dst:
                continue
            before = LedgerAccount.objects.get(pk=wallets[src].pk).balance
            try:
                with transaction.atomic():
                    ledger_post(
                        kind="adjustment",
                        reference=f"p:{n}",
                        legs=[Leg(wallets[src], -amount), Leg(wallets[dst], amount)],
                    )
            except InsufficientFunds:
                assert before < amount
        balances = [LedgerAccount.objects.get(pk=w.pk).balance for w in wallets]
        assert sum(balances) == sum(funding)
        assert min(balances) >= 0
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # every entry balances
        assert ledger_reconcile().ok
    finally:
        transaction.savepoint_rollback(sid)


# --- the two-halves booking (red-packet grabs) and a leg's currency -----------------------------


@pytest.mark.django_db
def test_a_refused_balances_apply_moves_no_balance(alice, bob):
    """``ledger_balances_apply`` is all or nothing: when one account would go below zero it
    raises ``InsufficientFunds`` having moved none, so a caller that catches it cannot commit a
    credit without its debit (the booked entry is the caller's to roll back)."""
    escrow = account_for(kind=AccountKind.RED_PACKET_ESCROW, owner_id=alice.pk)
    wallet = wallet_for(user_id=bob.pk)
    with transaction.atomic():
        booked = ledger_entry_book(
            kind="adjustment", reference="t:apply", legs=[Leg(escrow, -5), Leg(wallet, 5)]
        )
        with pytest.raises(InsufficientFunds):
            ledger_balances_apply(booked=[booked])
        moved = {a.id: a.balance for a in LedgerAccount.objects.filter(pk__in=[escrow.pk, wallet.pk])}
        transaction.set_rollback(True)
    assert moved == {escrow.pk: 0, wallet.pk: 0}


def _mislabelled(account: LedgerAccount, currency: str) -> LedgerAccount:
    """The account as a caller with a bug holds it: right id, wrong currency."""
    return LedgerAccount(id=account.id, kind=account.kind, owner_id=account.owner_id, currency=currency)


@pytest.mark.django_db
def test_a_leg_in_another_currency_than_its_account_is_refused(alice):
    """A leg must be in its account's currency: otherwise an entry balancing per currency could
    move CNY against USD. Every way to book refuses it (ValueError) and writes nothing."""
    usd_clearing = account_for(kind=AccountKind.PROVIDER_CLEARING, currency="USD")
    cny_wallet = wallet_for(user_id=alice.pk, currency="CNY")
    legs = [Leg(usd_clearing, -5), Leg(_mislabelled(cny_wallet, "USD"), 5)]
    entries = JournalEntry.objects.count()
    with transaction.atomic():
        with pytest.raises(ValueError, match="currency"):
            ledger_post(kind="adjustment", reference="t:fx1", legs=legs)
        with pytest.raises(ValueError, match="currency"):
            ledger_post_rows(
                kind="adjustment",
                reference="t:fx2",
                memo="",
                legs=[(usd_clearing.id, -5, "USD"), (cny_wallet.id, 5, "USD")],
                now=timezone.now(),
            )
        with pytest.raises(ValueError, match="currency"):
            ledger_entry_book(kind="adjustment", reference="t:fx3", legs=legs)
    assert JournalEntry.objects.count() == entries
    assert not Posting.objects.filter(account_id=cny_wallet.pk).exists()
    assert LedgerAccount.objects.get(pk=cny_wallet.pk).balance == 0


@pytest.mark.django_db
def test_booking_an_unknown_account_in_two_halves_is_refused(alice):
    wallet = wallet_for(user_id=alice.pk)
    ghost = LedgerAccount(id=10**12, kind=AccountKind.WALLET, owner_id=alice.pk, currency=wallet.currency)
    with transaction.atomic(), pytest.raises(ValueError, match="unknown ledger account"):
        ledger_entry_book(kind="adjustment", reference="t:ghost", legs=[Leg(wallet, -1), Leg(ghost, 1)])
    assert not JournalEntry.objects.filter(reference="t:ghost").exists()
