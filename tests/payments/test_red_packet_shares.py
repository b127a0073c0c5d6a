"""Red packets split when sent: shares drawn at send time, claimed with SKIP LOCKED, the hot rows
written last; exactly-once grabs and refunds racing on PostgreSQL; the migration's split of
packets in flight; the two-halves ledger booking the grab uses."""

from __future__ import annotations

import importlib
import logging
import random
import threading
import time
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection, transaction
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging import services as chat_services
from payments import red_packets
from payments.ledger import (
    InsufficientFunds,
    Leg,
    account_for,
    ledger_balances_apply,
    ledger_entry_book,
    ledger_post,
    ledger_reconcile,
    money_atomic,
    wallet_for,
)
from payments.models import (
    AccountKind,
    JournalEntry,
    LedgerAccount,
    RedPacket,
    RedPacketGrab,
    RedPacketShare,
)
from superapp.core import prepared
from superapp.core.errors import ApplicationError
from tests.threads import run_together

from ..conftest import befriend
from .conftest import PIN, fund, with_pin


def _group(owner, members):
    for m in members:
        befriend(owner, m)
    return chat_services.group_create(creator_id=owner.pk, name="g", member_ids=[m.pk for m in members])


def _send(sender, conv, *, count, total, kind="lucky"):
    return red_packets.red_packet_send(
        sender_id=sender.pk, kind=kind, total_amount=total, count=count, conversation_id=conv.pk, pin=PIN
    )


def _escrow(user) -> int:
    return LedgerAccount.objects.get(kind=AccountKind.RED_PACKET_ESCROW, owner=user).balance


def _wallet(user) -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner=user).first()
    return row.balance if row else 0


@pytest.fixture
def world(payer, make_user):
    members = [make_user() for _ in range(6)]
    return payer, members, _group(payer, members)


def _shares(packet) -> list[int]:
    return list(RedPacketShare.objects.filter(packet=packet).order_by("id").values_list("amount", flat=True))


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 100), extra=st.integers(0, 20_000), seed=st.integers())
def test_the_split_at_send_time_is_exact_and_within_bounds(count, extra, seed):
    total = count + extra
    shares = red_packets.split(kind="lucky", total_amount=total, count=count, rng=random.Random(seed))
    assert len(shares) == count and sum(shares) == total and min(shares) >= 1
    remaining = total
    for left, share in zip(range(count, 1, -1), shares, strict=False):
        assert share <= 2 * remaining // left  # at most twice the mean of what remains
        remaining -= share
    assert red_packets.split(kind="normal", total_amount=count * 7, count=count) == [7] * count


@pytest.mark.django_db
def test_every_share_is_drawn_when_the_packet_is_sent(world):
    sender, members, conv = world
    lucky = _send(sender, conv, count=6, total=1_000)
    shares = _shares(lucky)
    assert len(shares) == 6 and sum(shares) == 1_000 and min(shares) >= 1
    normal = _send(sender, conv, count=4, total=800, kind="normal")
    assert _shares(normal) == [200] * 4
    # Grabs take them in the order they were drawn; a share leaves the table when it is grabbed.
    got = [red_packets.red_packet_grab(user_id=m.pk, packet_id=lucky.pk).amount for m in members[:4]]
    assert got == shares[:4] and _shares(lucky) == shares[4:]
    lucky.refresh_from_db()
    assert (lucky.remaining_count, lucky.remaining_amount) == (2, sum(shares[4:]))


@pytest.mark.django_db
def test_the_refund_takes_the_unclaimed_shares(world):
    sender, members, conv = world
    packet = _send(sender, conv, count=3, total=900)
    got = red_packets.red_packet_grab(user_id=members[0].pk, packet_id=packet.pk).amount
    RedPacket.objects.filter(pk=packet.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert red_packets.red_packet_refund_if_expired(packet_id=packet.pk)
    assert not RedPacketShare.objects.filter(packet=packet).exists()
    assert _escrow(sender) == 0 and _wallet(sender) == 10_000 - got
    assert not red_packets.red_packet_refund_if_expired(packet_id=packet.pk)


@pytest.mark.django_db
def test_a_grab_writes_the_hot_rows_last(world):
    """The rows every grab of a packet writes (the packet, the sender's escrow, the sender's
    event stream head) are locked by the last statements before COMMIT, nothing earlier locks
    them, and every lookup happens before the transaction."""
    sender, members, conv = world
    packet = _send(sender, conv, count=3, total=900)
    wallet_for(user_id=members[0].pk, currency="CNY")  # made on first use: not this test's point
    with CaptureQueriesContext(connection) as queries:
        red_packets.red_packet_grab(user_id=members[0].pk, packet_id=packet.pk)
    # Transaction control left out (in a test the money transaction is a savepoint).
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT")
    # (a prepared statement is logged as its EXECUTE: read the statement behind it)
    sql = [" ".join(prepared.sql_of(q["sql"]).split()) for q in queries.captured_queries]
    sql = [s for s in sql if not s.startswith(control)]
    begin = next(i for i, s in enumerate(sql) if "payments_redpacketshare" in s)
    before, inside = sql[:begin], sql[begin:]
    assert not [s for s in before if "FOR UPDATE" in s or s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert any("payments_ledgeraccount" in s for s in before)  # the escrow and wallet, looked up
    assert "FOR UPDATE SKIP LOCKED" in inside[0] and "INSERT INTO payments_redpacketgrab" in inside[0]
    hot = next(i for i, s in enumerate(inside) if s.startswith("UPDATE payments_redpacket "))
    assert "INSERT INTO payments_journalentry" in " ".join(inside[:hot])
    tail = inside[hot + 1 :]
    # The balances (one statement), then the events (the stream heads and the rows).
    assert "UPDATE payments_ledgeraccount" in tail[0], tail
    assert tail[1:] and all("core_userstream" in s or "core_event" in s for s in tail[1:]), tail
    assert not [s for s in inside if 'FROM "payments_redpacket"' in s and "FOR UPDATE" in s]


@pytest.mark.django_db
def test_the_grab_books_one_entry_and_moves_both_balances(world):
    sender, members, conv = world
    packet = _send(sender, conv, count=2, total=500)
    grab = red_packets.red_packet_grab(user_id=members[0].pk, packet_id=packet.pk)
    entry = JournalEntry.objects.get(reference=f"red_packet:{packet.pk}:grab:{members[0].pk}")
    assert entry.kind == "red_packet_grab"
    assert sorted(entry.postings.values_list("amount", flat=True)) == [-grab.amount, grab.amount]
    assert _escrow(sender) == 500 - grab.amount and _wallet(members[0]) == grab.amount
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_ledger_balances_apply_refuses_to_overdraw_and_rolls_back(world):
    sender, members, conv = world
    _send(sender, conv, count=1, total=100)
    escrow = account_for(kind=AccountKind.RED_PACKET_ESCROW, owner_id=sender.pk, currency="CNY")
    wallet = wallet_for(user_id=members[0].pk, currency="CNY")

    @money_atomic
    def overdraw():
        booked = ledger_entry_book(
            kind=JournalEntry.Kind.ADJUSTMENT,
            reference="test:overdraw",
            legs=[Leg(escrow, -101), Leg(wallet, 101)],
        )
        ledger_balances_apply(booked=[booked])

    with pytest.raises(InsufficientFunds):
        overdraw()
    assert not JournalEntry.objects.filter(reference="test:overdraw").exists()
    assert _escrow(sender) == 100 and _wallet(members[0]) == 0
    with transaction.atomic(), pytest.raises(ValueError):
        ledger_entry_book(kind="adjustment", reference="x", legs=[Leg(escrow, -1), Leg(wallet, 2)])


@pytest.mark.django_db
def test_packets_in_flight_at_migration_time_are_split_then_grabbed_and_refunded(world):
    """Migration 0006 splits the remainder of every active packet made before shares existed."""
    sender, members, conv = world
    in_flight = _send(sender, conv, count=4, total=1_000)
    first = red_packets.red_packet_grab(user_id=members[0].pk, packet_id=in_flight.pk).amount
    finished = _send(sender, conv, count=1, total=100)
    red_packets.red_packet_grab(user_id=members[0].pk, packet_id=finished.pk)
    RedPacketShare.objects.all().delete()  # as before the migration: no share rows at all
    migration = importlib.import_module("payments.migrations.0006_red_packet_shares")
    with transaction.atomic():
        migration.split_active_packets(django_apps, None)
        migration.split_active_packets(django_apps, None)  # twice: no second split
    shares = _shares(in_flight)
    assert len(shares) == 3 and sum(shares) == 1_000 - first and min(shares) >= 1
    assert not RedPacketShare.objects.filter(packet=finished).exists()
    second = red_packets.red_packet_grab(user_id=members[1].pk, packet_id=in_flight.pk).amount
    assert second == shares[0]
    RedPacket.objects.filter(pk=in_flight.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert red_packets.red_packet_refund_if_expired(packet_id=in_flight.pk)
    assert _escrow(sender) == 0 and _wallet(sender) == 10_000 - 100 - first - second
    assert ledger_reconcile().ok


def test_the_migration_split_follows_next_share():
    migration = importlib.import_module("payments.migrations.0006_red_packet_shares")
    rng = random.Random(3)
    for _ in range(500):
        count = rng.randint(1, 60)
        total = rng.randint(count, 20_000)
        shares = migration._draws("lucky", total, count, rng)
        assert len(shares) == count and sum(shares) == total and min(shares) >= 1
    assert migration._draws("normal", 900, 3, rng) == [300, 300, 300]


# --- counts and shares that disagree (old code running while migration 0006 ran) ---------------
# Before 0006 a grab drew its share from the packet's counts and the refund left no shares
# behind. Deployed code still doing that while 0006 runs can make a packet's counts and its
# shares disagree; the grab's guard on the counts must then refuse, never strand or pay twice.


@money_atomic
def _old_code_grab(*, user_id: int, packet: RedPacket, share: int) -> None:
    """A grab as the code before 0006 made it: from the packet's counts, no share consumed."""
    packet = RedPacket.objects.select_for_update().get(pk=packet.pk)
    RedPacketGrab.objects.create(packet=packet, user_id=user_id, amount=share)
    ledger_post(
        kind=JournalEntry.Kind.RED_PACKET_GRAB,
        reference=f"red_packet:{packet.id}:grab:{user_id}",
        legs=[
            Leg(account_for(kind=AccountKind.RED_PACKET_ESCROW, owner_id=packet.sender_id), -share),
            Leg(wallet_for(user_id=user_id), share),
        ],
    )
    packet.remaining_amount -= share
    packet.remaining_count -= 1
    packet.save(update_fields=["remaining_amount", "remaining_count"])


@money_atomic
def _old_code_refund(*, packet_id: int) -> None:
    """The expiry refund as the code before 0006 made it: the counts refunded, shares left."""
    packet = RedPacket.objects.select_for_update().get(pk=packet_id)
    ledger_post(
        kind=JournalEntry.Kind.RED_PACKET_REFUND,
        reference=f"red_packet:{packet.id}:refund",
        legs=[
            Leg(
                account_for(kind=AccountKind.RED_PACKET_ESCROW, owner_id=packet.sender_id),
                -packet.remaining_amount,
            ),
            Leg(wallet_for(user_id=packet.sender_id), packet.remaining_amount),
        ],
    )
    packet.status = RedPacket.Status.REFUNDED
    packet.resolved_at = timezone.now()
    packet.save(update_fields=["status", "resolved_at"])


@pytest.mark.django_db
def test_the_last_count_is_only_taken_by_exactly_the_remainder(world, caplog):
    """Shares 300+300+300, but an old-code grab took 50 off the counts (850 for 2 shares left):
    the grab that would take the last count with 300 of the 550 left is refused (it would finish
    the packet with 250 stranded in escrow: finished packets are never refunded). The packet
    stays active, and its expiry refund returns exactly what its escrow still holds."""
    sender, members, conv = world
    packet = _send(sender, conv, count=3, total=900, kind="normal")
    _old_code_grab(user_id=members[0].pk, packet=packet, share=50)
    assert red_packets.red_packet_grab(user_id=members[1].pk, packet_id=packet.pk).amount == 300
    with caplog.at_level(logging.ERROR, logger="payments"), pytest.raises(ApplicationError) as refused:
        red_packets.red_packet_grab(user_id=members[2].pk, packet_id=packet.pk)
    assert refused.value.code == "red_packet_empty"
    assert "payments.red_packet_shares_disagree" in [r.getMessage() for r in caplog.records]
    packet.refresh_from_db()
    assert (packet.status, packet.remaining_count, packet.remaining_amount) == ("active", 1, 550)
    assert _shares(packet) == [300, 300] and _wallet(members[2]) == 0  # the old grab took none
    RedPacket.objects.filter(pk=packet.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert red_packets.red_packet_refund_if_expired(packet_id=packet.pk)
    assert _escrow(sender) == 0 and _wallet(sender) == 10_000 - 900 + 550
    assert _wallet(members[0]) + _wallet(members[1]) == 350


@pytest.mark.django_db
def test_a_share_left_by_an_old_code_refund_is_never_paid(world, monkeypatch):
    """The old refund job refunded P1's counts and left its shares. A grab that looked P1 up a
    moment before must not claim one of them: it would be paid out of the escrow the sender's
    other packet P2 needs (sender refunded and grabber paid)."""
    sender, members, conv = world
    p1 = _send(sender, conv, count=2, total=200, kind="normal")
    p2 = _send(sender, conv, count=2, total=1_000, kind="normal")
    lookup = red_packets._lookup

    def lookup_then_the_old_refund_job(**kwargs):
        found = lookup(**kwargs)  # P1 still active and not yet expired, as this grab saw it
        RedPacket.objects.filter(pk=p1.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        _old_code_refund(packet_id=p1.pk)
        return found

    monkeypatch.setattr(red_packets, "_lookup", lookup_then_the_old_refund_job)
    with pytest.raises(ApplicationError) as refused:
        red_packets.red_packet_grab(user_id=members[0].pk, packet_id=p1.pk)
    assert refused.value.code == "red_packet_expired"
    monkeypatch.setattr(red_packets, "_lookup", lookup)
    assert _wallet(members[0]) == 0 and _escrow(sender) == 1_000
    assert _wallet(sender) == 10_000 - 1_000
    for m in members[1:3]:
        assert red_packets.red_packet_grab(user_id=m.pk, packet_id=p2.pk).amount == 500
    assert _escrow(sender) == 0


# --- on PostgreSQL, in threads (each its own connection) --------------------------------------


def _crowd(make_user, n, funds):
    sender = make_user()
    with_pin(sender)
    fund(sender, funds)
    members = [make_user() for _ in range(n)]
    return sender, members, _group(sender, members)


@pytest.mark.django_db(transaction=True)
def test_many_grabbers_on_one_packet_in_threads(make_user, caplog):
    """60 members (each its own connection) grab a 45-share packet, each trying twice: exactly 45
    grabs by 45 users summing to the total, every share gone, the packet finished, no lock
    retry, the ledger reconciles."""
    assert connection.vendor == "postgresql"
    sender, members, conv = _crowd(make_user, 60, 20_000)
    packet = _send(sender, conv, count=45, total=20_000)
    outcomes: list[str] = []

    def grab(member):
        def job():
            for _ in range(2):
                try:
                    red_packets.red_packet_grab(user_id=member.pk, packet_id=packet.pk)
                    outcomes.append("ok")
                except ApplicationError as exc:
                    outcomes.append(exc.code)

        return job

    with caplog.at_level(logging.WARNING, logger="payments"):
        errors = run_together([grab(m) for m in members], timeout=180).raised
    assert not errors, errors[:3]
    assert not [r for r in caplog.records if r.getMessage() == "payments.retry"]
    assert outcomes.count("ok") == 45
    assert set(outcomes) <= {"ok", "already_grabbed", "red_packet_empty"}
    grabs = RedPacketGrab.objects.filter(packet=packet)
    assert grabs.count() == 45 == grabs.values("user_id").distinct().count()
    assert grabs.aggregate(t=Sum("amount"))["t"] == 20_000 and min(g.amount for g in grabs) >= 1
    assert not RedPacketShare.objects.filter(packet=packet).exists()
    packet.refresh_from_db()
    assert (packet.remaining_amount, packet.remaining_count, packet.status) == (0, 0, "finished")
    assert _escrow(sender) == 0 and sum(_wallet(m) for m in members) == 20_000
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_one_user_grabbing_from_many_connections_at_once_gets_one_share(make_user):
    sender, members, conv = _crowd(make_user, 3, 1_000)
    packet = _send(sender, conv, count=3, total=900)
    outcomes: list[str] = []

    def job():
        try:
            red_packets.red_packet_grab(user_id=members[0].pk, packet_id=packet.pk)
            outcomes.append("ok")
        except ApplicationError as exc:
            outcomes.append(exc.code)

    assert not run_together([job] * 8, timeout=180).raised
    assert outcomes.count("ok") == 1 and set(outcomes) == {"ok", "already_grabbed"}
    # The refused attempts gave their claimed shares back.
    assert len(_shares(packet)) == 2
    assert red_packets.red_packet_grab(user_id=members[1].pk, packet_id=packet.pk).amount > 0
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_grabs_racing_the_expiry_refund(make_user, caplog):
    """The refund runs while 40 members grab a 30-share packet: every fen is either grabbed or
    refunded, once; the refund waits for grabs holding a share; no lock retry; no share left."""
    sender, members, conv = _crowd(make_user, 40, 15_000)
    packet = _send(sender, conv, count=30, total=15_000)
    outcomes: list[str] = []
    refunded: list[bool] = []

    def grab(member):
        def job():
            try:
                red_packets.red_packet_grab(user_id=member.pk, packet_id=packet.pk)
                outcomes.append("ok")
            except ApplicationError as exc:
                outcomes.append(exc.code)

        return job

    def expire_and_refund():
        time.sleep(0.05)
        RedPacket.objects.filter(pk=packet.pk).update(expires_at=timezone.now())
        refunded.append(red_packets.red_packet_refund_if_expired(packet_id=packet.pk))

    with caplog.at_level(logging.WARNING, logger="payments"):
        errors = run_together([grab(m) for m in members] + [expire_and_refund], timeout=180).raised
    assert not errors, errors[:3]
    assert not [r for r in caplog.records if r.getMessage() == "payments.retry"]
    assert set(outcomes) <= {"ok", "red_packet_expired", "red_packet_empty"}
    packet.refresh_from_db()
    grabbed = RedPacketGrab.objects.filter(packet=packet).aggregate(t=Sum("amount"))["t"] or 0
    assert (
        outcomes.count("ok")
        == RedPacketGrab.objects.filter(packet=packet).count()
        == 30 - packet.remaining_count
    )
    assert grabbed + packet.remaining_amount == 15_000
    if refunded[0]:
        assert packet.status == "refunded" and _wallet(sender) == packet.remaining_amount
    else:  # every share went before the refund looked
        assert packet.status == "finished" and packet.remaining_count == 0
    assert not RedPacketShare.objects.filter(packet=packet).exists()
    assert _escrow(sender) == 0 and sum(_wallet(m) for m in members) == grabbed
    assert ledger_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_balances_apply_sees_a_credit_committed_while_it_waited(make_user):
    """``ledger_balances_apply`` checks and moves the balance as locked (the last committed
    version), not as its statement's snapshot saw it: a debit that waited for a concurrent credit
    to commit succeeds on the credited balance."""
    payer, payee = make_user(), make_user()
    wallet, other = wallet_for(user_id=payer.pk, currency="CNY"), wallet_for(user_id=payee.pk, currency="CNY")
    clearing = account_for(kind=AccountKind.PROVIDER_CLEARING, currency="CNY")
    locked = threading.Event()

    def credit():
        with transaction.atomic():
            ledger_post(
                kind="adjustment", reference="test:credit", legs=[Leg(clearing, -100), Leg(wallet, 100)]
            )
            locked.set()
            time.sleep(0.5)  # the debit's statement starts (and takes its snapshot) meanwhile

    @money_atomic
    def debit():
        booked = ledger_entry_book(
            kind="adjustment", reference="test:debit", legs=[Leg(wallet, -60), Leg(other, 60)]
        )
        ledger_balances_apply(booked=[booked])

    def spend():
        assert locked.wait(10), "the credit never took its lock"
        debit()
        return "ok"

    outcome = run_together([credit, spend], timeout=30, barrier=False)
    assert outcome.errors == [None, None], outcome.errors
    assert outcome.results[1] == "ok"
    assert LedgerAccount.objects.get(pk=wallet.pk).balance == 40
    assert LedgerAccount.objects.get(pk=other.pk).balance == 60
    assert ledger_reconcile().ok
