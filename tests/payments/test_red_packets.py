"""Red packets: split properties, API, exactly-once grabs under concurrency, refunds, events."""

from __future__ import annotations

import random
from datetime import timedelta
from functools import partial

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging import services as chat_services
from payments import events, tasks
from payments.ledger import ledger_reconcile
from payments.models import AccountKind, LedgerAccount, RedPacket, RedPacketGrab
from payments.red_packets import next_share, red_packet_grab, red_packet_send
from superapp.core.errors import ApplicationError
from superapp.core.models import Event
from tests.threads import run_together

from ..conftest import befriend
from .conftest import PIN, fund, with_pin

IDEM = "HTTP_IDEMPOTENCY_KEY"


def _split(kind: str, total: int, count: int, rng: random.Random) -> list[int]:
    shares, remaining = [], total
    for left in range(count, 0, -1):
        share = next_share(kind=kind, remaining_amount=remaining, remaining_count=left, rng=rng)
        if left > 1 and kind == "lucky":
            assert share <= 2 * remaining // left  # at most twice the mean of what remains
        shares.append(share)
        remaining -= share
    return shares


@settings(max_examples=500, deadline=None)
@given(count=st.integers(1, 100), extra=st.integers(0, 20_000), seed=st.integers())
def test_lucky_split_is_exact_and_never_zero(count, extra, seed):
    total = count + extra
    shares = _split("lucky", total, count, random.Random(seed))
    assert sum(shares) == total
    assert len(shares) == count
    assert min(shares) >= 1


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 100), each=st.integers(1, 200))
def test_normal_split_is_equal(count, each):
    assert _split("normal", count * each, count, random.Random(0)) == [each] * count


def test_many_random_lucky_packets():
    rng = random.Random(42)
    for _ in range(5_000):
        count = rng.randint(1, 50)
        total = rng.randint(count, 20_000)
        shares = _split("lucky", total, count, rng)
        assert sum(shares) == total and min(shares) >= 1


def _balance(user) -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner=user).first()
    return row.balance if row else 0


def _chat_group(owner, members):
    """A group chat of ``owner`` and ``members`` (the red packets' audience)."""
    for m in members:
        befriend(owner, m)
    return chat_services.group_create(creator_id=owner.pk, name="g", member_ids=[m.pk for m in members])


@pytest.fixture
def group(payer, make_user):
    members = [make_user() for _ in range(4)]
    payer.conv = _chat_group(payer, members)
    return payer, members


def _create(client, members, **extra):
    body = {
        "kind": "lucky",
        "total_amount": 1_000,
        "count": 3,
        "conversation_id": client.user.conv.pk,
        "greeting": "Happy new year",
        "pin": PIN,
        **extra,
    }
    return client.post("/api/v1/payments/red-packets", body, format="json", **{IDEM: "rp"})


@pytest.mark.django_db
def test_send_grab_and_see_who_got_what(client_for, group):
    sender, members = group
    created = _create(client_for(sender), members)
    assert created.status_code == 201, created.json()
    packet_id = created.json()["id"]
    assert _balance(sender) == 9_000
    amounts = []
    for i, member in enumerate(members[:3]):
        grab = client_for(member).post(f"/api/v1/payments/red-packets/{packet_id}/grab", **{IDEM: f"g{i}"})
        assert grab.status_code == 201
        amounts.append(grab.json()["amount"])
    late = client_for(members[3]).post(f"/api/v1/payments/red-packets/{packet_id}/grab", **{IDEM: "late"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "red_packet_empty"
    assert sum(amounts) == 1_000 and min(amounts) >= 1
    detail = client_for(sender).get(f"/api/v1/payments/red-packets/{packet_id}").json()
    assert detail["status"] == "finished" and detail["remaining_amount"] == 0
    assert [g["amount"] for g in detail["grabs"]] == amounts
    assert sum(g["best_luck"] for g in detail["grabs"]) == 1
    best = next(g for g in detail["grabs"] if g["best_luck"])
    assert best["amount"] == max(amounts)
    assert [_balance(m) for m in members[:3]] == amounts
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_a_member_grabs_at_most_once(client_for, group):
    sender, members = group
    packet_id = _create(client_for(sender), members).json()["id"]
    client = client_for(members[0])
    assert client.post(f"/api/v1/payments/red-packets/{packet_id}/grab", **{IDEM: "a"}).status_code == 201
    again = client.post(f"/api/v1/payments/red-packets/{packet_id}/grab", **{IDEM: "b"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_grabbed"


@pytest.mark.django_db
def test_outsiders_get_404(client_for, group, carol):
    sender, members = group
    packet_id = _create(client_for(sender), members).json()["id"]
    assert client_for(carol).get(f"/api/v1/payments/red-packets/{packet_id}").status_code == 404
    assert (
        client_for(carol).post(f"/api/v1/payments/red-packets/{packet_id}/grab", **{IDEM: "x"}).status_code
        == 404
    )
    assert client_for(carol).get("/api/v1/payments/red-packets/999999").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"count": 6}, "count"),  # the group has 5 members, the sender included
        ({"count": 0}, "count"),
        ({"kind": "huge"}, "kind"),
        ({"kind": "normal", "total_amount": 1_000, "count": 3}, "total_amount"),
        ({"total_amount": 2}, "total_amount"),
        ({"total_amount": 20_001}, "total_amount"),
        ({"greeting": "x" * 101}, "greeting"),
    ],
)
def test_bad_red_packets(client_for, group, extra, field):
    sender, members = group
    response = _create(client_for(sender), members, **extra)
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert _balance(sender) == 10_000


@pytest.mark.django_db
def test_a_direct_red_packet_only_to_whom_i_may_message(client_for, payer, carol):
    response = client_for(payer).post(
        "/api/v1/payments/red-packets",
        {"kind": "lucky", "total_amount": 100, "count": 1, "to_user_id": carol.pk, "pin": PIN},
        format="json",
        **{IDEM: "rp"},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_friends"
    assert _balance(payer) == 10_000


@pytest.mark.django_db
def test_normal_packet_shares_equally(group):
    sender, members = group
    packet = red_packet_send(
        sender_id=sender.pk,
        kind="normal",
        total_amount=900,
        count=3,
        conversation_id=sender.conv.pk,
        pin=PIN,
    )
    assert [red_packet_grab(user_id=m.pk, packet_id=packet.pk).amount for m in members[:3]] == [300, 300, 300]


@pytest.mark.django_db
def test_unclaimed_remainder_is_refunded_once_after_expiry(group):
    sender, members = group
    packet = red_packet_send(
        sender_id=sender.pk,
        kind="lucky",
        total_amount=1_000,
        count=3,
        conversation_id=sender.conv.pk,
        pin=PIN,
    )
    got = red_packet_grab(user_id=members[0].pk, packet_id=packet.pk).amount
    assert tasks.refund_expired_red_packets.delay().get() == 0
    RedPacket.objects.filter(pk=packet.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ApplicationError, match="expired"):
        red_packet_grab(user_id=members[1].pk, packet_id=packet.pk)
    assert tasks.refund_expired_red_packets.delay().get() == 1
    assert tasks.refund_expired_red_packets.delay().get() == 0
    assert _balance(sender) == 10_000 - got
    data = Event.objects.get(user=sender, type=events.RED_PACKET_REFUNDED).data
    assert data["refunded_amount"] == 1_000 - got and data["status"] == "refunded"
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_red_packet_event_shapes(group):
    sender, members = group
    packet = red_packet_send(
        sender_id=sender.pk,
        kind="lucky",
        total_amount=500,
        count=2,
        conversation_id=sender.conv.pk,
        pin=PIN,
        greeting="hi",
    )
    assert not Event.objects.filter(user=members[3], type=events.RED_PACKET_SENT).exists()
    sent = Event.objects.get(user=sender, type=events.RED_PACKET_SENT).data
    assert set(sent) == {
        "id",
        "sender_id",
        "conversation_id",
        "kind",
        "currency",
        "total_amount",
        "count",
        "remaining_count",
        "greeting",
        "status",
        "created_at",
        "expires_at",
    }
    assert (sent["id"], sent["total_amount"], sent["count"], sent["greeting"]) == (packet.pk, 500, 2, "hi")
    grab = red_packet_grab(user_id=members[0].pk, packet_id=packet.pk)
    for user in (sender, members[0]):
        data = Event.objects.get(user=user, type=events.RED_PACKET_GRABBED).data
        assert data == {
            "packet_id": packet.pk,
            "conversation_id": sender.conv.pk,
            "user_id": members[0].pk,
            "amount": grab.amount,
            "currency": "CNY",
            "remaining_count": 1,
            "status": "active",
        }
    assert not Event.objects.filter(user=members[1], type=events.RED_PACKET_GRABBED).exists()


@pytest.mark.django_db(transaction=True)
def test_many_simultaneous_grabbers_get_exactly_the_total(make_user):
    """40 members grab a 25-share lucky packet at once: 25 grabs, each member at most once, the
    shares sum exactly to the total, the other 15 are told it is empty, no error leaks."""
    sender = make_user()
    with_pin(sender)
    fund(sender, 20_000)
    members = [make_user() for _ in range(40)]
    conv = _chat_group(sender, members)
    packet = red_packet_send(
        sender_id=sender.pk,
        kind="lucky",
        total_amount=20_000,
        count=25,
        conversation_id=conv.pk,
        pin=PIN,
    )
    outcomes: list[str] = []

    def grab(member) -> None:
        for _ in range(2):  # each tries twice: the second must never pay
            try:
                red_packet_grab(user_id=member.pk, packet_id=packet.pk)
                outcomes.append("ok")
            except ApplicationError as exc:
                outcomes.append(exc.code)

    errors = run_together([partial(grab, m) for m in members], timeout=120).raised
    assert not errors, errors[:3]
    assert outcomes.count("ok") == 25
    assert set(outcomes) <= {"ok", "already_grabbed", "red_packet_empty"}
    grabs = list(RedPacketGrab.objects.filter(packet=packet))
    assert len({g.user_id for g in grabs}) == 25
    assert sum(g.amount for g in grabs) == 20_000 and min(g.amount for g in grabs) >= 1
    packet.refresh_from_db()
    assert (packet.remaining_amount, packet.remaining_count, packet.status) == (0, 0, "finished")
    assert sum(_balance(m) for m in members) == 20_000
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_red_packet_detail_query_count(client_for, group, django_assert_num_queries):
    sender, members = group
    packet = red_packet_send(
        sender_id=sender.pk,
        kind="lucky",
        total_amount=1_000,
        count=4,
        conversation_id=sender.conv.pk,
        pin=PIN,
    )
    for m in members:
        red_packet_grab(user_id=m.pk, packet_id=packet.pk)
    client = client_for(sender)
    with django_assert_num_queries(3):  # session+user, packet, grabs
        assert len(client.get(f"/api/v1/payments/red-packets/{packet.pk}").json()["grabs"]) == 4
