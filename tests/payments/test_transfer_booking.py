"""The lean transfer path: one journal entry per transfer, the one-statement ledger booking, the
PIN judged inside the money transaction, the daily spending read in one statement."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection, transaction

from payments import services
from payments.ledger import (
    InsufficientFunds,
    Leg,
    ledger_post,
    ledger_post_rows,
    ledger_reconcile,
    wallet_for,
)
from payments.models import AccountKind, JournalEntry, LedgerAccount, Posting, Transfer, WalletSettings
from superapp.core.errors import ApplicationError
from tests.threads import indexed, run_together

from ..conftest import befriend
from .conftest import PIN, fund, with_pin

IDEM = "HTTP_IDEMPOTENCY_KEY"


@pytest.fixture
def friends(payer, bob):
    befriend(payer, bob)
    return payer, bob


def _entries(transfer: Transfer) -> list[tuple[str, str, list[tuple[int, int]]]]:
    rows = JournalEntry.objects.filter(reference__startswith=f"transfer:{transfer.pk}:").order_by("id")
    return [
        (
            e.kind,
            e.reference,
            sorted(Posting.objects.filter(entry=e).values_list("account__owner_id", "amount")),
        )
        for e in rows
    ]


@pytest.mark.django_db
def test_an_auto_accepted_transfer_is_one_entry_wallet_to_wallet(friends):
    alice, bob = friends
    services.wallet_settings_update(user_id=bob.pk, auto_accept_transfers=True)
    transfer = services.transfer_create(
        sender_id=alice.pk, receiver_id=bob.pk, amount=300, pin=PIN, note="tea"
    )
    assert transfer.status == Transfer.Status.ACCEPTED and transfer.resolved_at == transfer.created_at
    stored = Transfer.objects.get(pk=transfer.pk)
    assert (stored.status, stored.amount, stored.note, stored.resolved_at) == (
        "accepted",
        300,
        "tea",
        transfer.resolved_at,
    )
    assert _entries(transfer) == [
        ("transfer_send", f"transfer:{transfer.pk}:send", sorted([(alice.pk, -300), (bob.pk, 300)]))
    ]
    assert JournalEntry.objects.get(reference=f"transfer:{transfer.pk}:send").memo == "tea"
    # No escrow involved at all: not even made for the sender.
    assert not LedgerAccount.objects.filter(kind=AccountKind.TRANSFER_ESCROW).exists()
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_the_receiver_sees_an_auto_accepted_transfer_in_the_history(client_for, friends):
    alice, bob = friends
    services.wallet_settings_update(user_id=bob.pk, auto_accept_transfers=True)
    services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=300, pin=PIN, note="tea")
    mine = client_for(bob).get("/api/v1/payments/wallet/transactions").json()["results"]
    assert [(i["kind"], i["amount"], i["memo"]) for i in mine] == [("transfer_send", 300, "tea")]
    theirs = (
        client_for(alice).get("/api/v1/payments/wallet/transactions?kind=transfer_send").json()["results"]
    )
    assert [(i["kind"], i["amount"]) for i in theirs] == [("transfer_send", -300)]


@pytest.mark.django_db
def test_a_pending_transfer_goes_through_escrow_in_two_entries(friends):
    alice, bob = friends
    transfer = services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=300, pin=PIN)
    assert Transfer.objects.get(pk=transfer.pk).status == "pending"
    escrow = LedgerAccount.objects.get(kind=AccountKind.TRANSFER_ESCROW, owner=alice)
    assert escrow.balance == 300
    services.transfer_accept(user_id=bob.pk, transfer_id=transfer.pk)
    assert [kind for kind, _, _ in _entries(transfer)] == ["transfer_send", "transfer_accept"]
    assert LedgerAccount.objects.get(pk=escrow.pk).balance == 0
    assert wallet_for(user_id=bob.pk).balance == 300


@pytest.mark.django_db
def test_a_refused_transfer_leaves_no_row_and_no_entry(friends):
    alice, bob = friends
    with pytest.raises(InsufficientFunds):
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10_001, pin=PIN)
    assert not Transfer.objects.exists()
    assert not JournalEntry.objects.filter(kind="transfer_send").exists()
    assert wallet_for(user_id=alice.pk).balance == 10_000


# --- the PIN, inside the money transaction -----------------------------------------------------


@pytest.mark.django_db
def test_wrong_pins_are_counted_and_committed_then_lock(friends, settings):
    alice, bob = friends
    for left in range(settings.PAYMENTS_PIN_MAX_ATTEMPTS - 1, 0, -1):
        with pytest.raises(ApplicationError) as wrong:
            services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10, pin="000000")
        assert wrong.value.code == "invalid_pin" and f"{left} tries left" in str(wrong.value.message)
    with pytest.raises(ApplicationError) as locked:
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10, pin="000000")
    assert locked.value.code == "pin_locked"
    row = WalletSettings.objects.get(user=alice)
    assert row.pin_failed_attempts == 0 and row.pin_locked_until is not None
    # Locked: even the right PIN is refused, and nothing moved.
    with pytest.raises(ApplicationError) as still:
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10, pin=PIN)
    assert still.value.code == "pin_locked"
    assert not Transfer.objects.exists() and wallet_for(user_id=alice.pk).balance == 10_000


@pytest.mark.django_db
def test_a_right_pin_resets_the_counter_even_when_the_transfer_fails(friends):
    """As when the PIN had its own transaction: the reset is committed before the money moves."""
    alice, bob = friends
    WalletSettings.objects.filter(user=alice).update(pin_failed_attempts=3)
    with pytest.raises(InsufficientFunds):
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10_001, pin=PIN)
    assert WalletSettings.objects.get(user=alice).pin_failed_attempts == 0
    WalletSettings.objects.filter(user=alice).update(pin_failed_attempts=2)
    services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=100, pin=PIN)
    assert WalletSettings.objects.get(user=alice).pin_failed_attempts == 0
    assert Transfer.objects.count() == 1


@pytest.mark.django_db
def test_a_payer_without_wallet_settings_is_asked_for_a_pin(alice, bob):
    befriend(alice, bob)
    WalletSettings.objects.filter(user=alice).delete()
    with pytest.raises(ApplicationError) as failure:
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10, pin=PIN)
    assert failure.value.code == "pin_not_set"


# --- the daily limit, read in one statement -------------------------------------------------------


@pytest.mark.django_db
def test_every_kind_of_spending_counts_toward_the_daily_limit(client_for, friends, settings, make_user):
    from payments import red_packets

    alice, bob = friends
    settings.PAYMENTS_LIMITS = {
        "unverified": {"per_payment": 5_000, "per_day": 1_000},
        "verified": {"per_payment": 5_000, "per_day": 1_000},
    }
    services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=300, pin=PIN)
    red_packets.red_packet_send(
        sender_id=alice.pk, kind="normal", total_amount=200, count=1, to_user_id=bob.pk, pin=PIN
    )
    returned = services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=400, pin=PIN)
    services.transfer_return(user_id=bob.pk, transfer_id=returned.pk)  # refunded: no longer counts
    assert services._spent_today(user_id=alice.pk, currency="CNY") == 500
    services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=500, pin=PIN)
    with pytest.raises(ApplicationError) as over:
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=1, pin=PIN)
    assert over.value.code == "limit_per_day"


# --- the one-statement booking -------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unfunded_booking_writes_nothing_so_the_caller_can_go_on(payer, bob):
    wallet, other = wallet_for(user_id=payer.pk), wallet_for(user_id=bob.pk)
    entries = JournalEntry.objects.count()
    with transaction.atomic():
        with pytest.raises(InsufficientFunds):
            ledger_post(
                kind="adjustment", reference="t:unfunded", legs=[Leg(wallet, -10_001), Leg(other, 10_001)]
            )
        # The same transaction goes on and books something else.
        ledger_post(kind="adjustment", reference="t:funded", legs=[Leg(wallet, -1), Leg(other, 1)])
    assert JournalEntry.objects.count() == entries + 1
    assert (wallet_for(user_id=payer.pk).balance, wallet_for(user_id=bob.pk).balance) == (9_999, 1)
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_booking_refuses_malformed_legs_and_unknown_accounts(payer, bob):
    wallet = wallet_for(user_id=payer.pk)
    with transaction.atomic():
        with pytest.raises(ValueError):
            ledger_post_rows(
                kind="adjustment",
                reference="t:x",
                memo="",
                legs=[(wallet.id, -1, "CNY"), (wallet.id, 2, "CNY")],
                now=wallet.created_at,
            )
        with pytest.raises(ValueError, match="unknown ledger account"):
            ledger_post_rows(
                kind="adjustment",
                reference="t:y",
                memo="",
                legs=[(wallet.id, -1, "CNY"), (10**12, 1, "CNY")],
                now=wallet.created_at,
            )
    assert wallet_for(user_id=payer.pk).balance == 10_000


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_on_hot_wallets_never_trip_the_check(make_user):
    """10 threads moving money among 4 wallets with the one-statement booking: each either books
    or is refused as InsufficientFunds; never a CHECK violation (a balance computed from a stale
    snapshot), never a negative balance, the total unchanged, the ledger reconciled."""
    assert connection.vendor == "postgresql"
    users = [make_user() for _ in range(4)]
    for u in users:
        fund(u, 2_000)
    wallets = [wallet_for(user_id=u.pk) for u in users]
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def job(index: int) -> None:
        rng = random.Random(index)
        for n in range(25):
            src, dst = rng.sample(wallets, 2)
            amount = rng.randint(1, 900)
            try:
                with transaction.atomic():
                    ledger_post(
                        kind="adjustment",
                        reference=f"hot:{index}:{n}",
                        legs=[Leg(src, -amount), Leg(dst, amount)],
                    )
                key = "ok"
            except InsufficientFunds:
                key = "refused"
            with lock:
                counts[key] += 1

    errors = run_together(indexed(10, job), timeout=120, barrier=False).raised
    assert not errors, errors[:3]
    assert counts["ok"] + counts["refused"] == 250 and counts["ok"] > 0
    balances = list(
        LedgerAccount.objects.filter(pk__in=[w.pk for w in wallets]).values_list("balance", flat=True)
    )
    assert min(balances) >= 0 and sum(balances) == 4 * 2_000
    assert ledger_reconcile().ok


# --- over HTTP --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_auto_accepted_transfer_over_http(client_for, friends):
    alice, bob = friends
    services.wallet_settings_update(user_id=bob.pk, auto_accept_transfers=True)
    body = {"receiver_id": bob.pk, "amount": 250, "pin": PIN, "note": "hi"}
    first = client_for(alice).post("/api/v1/payments/transfers", body, format="json", **{IDEM: "k1"})
    again = client_for(alice).post("/api/v1/payments/transfers", body, format="json", **{IDEM: "k1"})
    assert first.status_code == 201 and first.json() == again.json()
    assert first.json()["status"] == "accepted" and first.json()["resolved_at"] is not None
    assert Transfer.objects.count() == 1
    assert (wallet_for(user_id=alice.pk).balance, wallet_for(user_id=bob.pk).balance) == (9_750, 250)


@pytest.mark.django_db
def test_a_payer_with_a_pin_and_no_wallet_yet_gets_one(friends, make_user):
    alice, _ = friends
    dave = make_user()
    befriend(alice, dave)
    with_pin(dave)
    services.wallet_settings_update(user_id=dave.pk, auto_accept_transfers=True)
    # dave has no wallet account yet: made on first use, inside the money transaction.
    assert not LedgerAccount.objects.filter(owner=dave).exists()
    services.transfer_create(sender_id=alice.pk, receiver_id=dave.pk, amount=5, pin=PIN)
    assert wallet_for(user_id=dave.pk).balance == 5
    services.transfer_create(sender_id=dave.pk, receiver_id=alice.pk, amount=5, pin=PIN)
    assert wallet_for(user_id=dave.pk).balance == 0
