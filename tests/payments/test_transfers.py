"""Transfers to friends: API, services, expiry refunds, limits, events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from payments import events, services, tasks
from payments.ledger import ledger_reconcile
from payments.models import AccountKind, LedgerAccount, TopUp, Transfer, WalletSettings
from superapp.core.models import Event

from ..conftest import befriend
from .conftest import PIN, fund

IDEM = "HTTP_IDEMPOTENCY_KEY"


def _balance(user) -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner=user).first()
    return row.balance if row else 0


def _send(client, receiver, amount=300, key="k", **extra):
    body = {"receiver_id": receiver.pk, "amount": amount, "pin": PIN, **extra}
    return client.post("/api/v1/payments/transfers", body, format="json", **{IDEM: key})


@pytest.fixture
def friends(payer, bob):
    befriend(payer, bob)
    return payer, bob


@pytest.mark.django_db
def test_transfer_waits_in_escrow_until_accepted(client_for, friends, django_capture_on_commit_callbacks):
    alice, bob = friends
    response = _send(client_for(alice), bob, note="dinner")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending" and body["note"] == "dinner" and body["amount"] == 300
    assert (_balance(alice), _balance(bob)) == (9_700, 0)
    accepted = client_for(bob).post(f"/api/v1/payments/transfers/{body['id']}/accept", **{IDEM: "a"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert (_balance(alice), _balance(bob)) == (9_700, 300)
    assert LedgerAccount.objects.get(kind=AccountKind.TRANSFER_ESCROW).balance == 0
    types = list(Event.objects.filter(user=alice).order_by("seq").values_list("type", flat=True))
    # The wallet's events, each after the chat's (tests/payments/test_chat_money.py).
    assert [t for t in types if t.startswith("payments.transfer.")][-2:] == [
        events.TRANSFER_CREATED,
        events.TRANSFER_ACCEPTED,
    ]
    assert Event.objects.filter(user=bob, type=events.TRANSFER_ACCEPTED).exists()


@pytest.mark.django_db
def test_the_same_request_twice_moves_money_once(client_for, friends):
    alice, bob = friends
    client = client_for(alice)
    first, second = _send(client, bob, key="same"), _send(client, bob, key="same")
    assert first.json() == second.json()
    assert Transfer.objects.count() == 1 and _balance(alice) == 9_700
    assert _send(client, bob, amount=301, key="same").status_code == 409


@pytest.mark.django_db
def test_auto_accept(client_for, friends):
    alice, bob = friends
    services.wallet_settings_update(user_id=bob.pk, auto_accept_transfers=True)
    assert _send(client_for(alice), bob).json()["status"] == "accepted"
    assert (_balance(alice), _balance(bob)) == (9_700, 300)


@pytest.mark.django_db
def test_receiver_can_return_it(client_for, friends):
    alice, bob = friends
    transfer_id = _send(client_for(alice), bob).json()["id"]
    returned = client_for(bob).post(f"/api/v1/payments/transfers/{transfer_id}/return", **{IDEM: "r"})
    assert returned.json()["status"] == "refunded"
    assert _balance(alice) == 10_000
    again = client_for(bob).post(f"/api/v1/payments/transfers/{transfer_id}/accept", **{IDEM: "a"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "transfer_not_pending"


@pytest.mark.django_db
def test_only_the_parties_see_it_and_only_the_receiver_accepts(client_for, friends, carol):
    alice, bob = friends
    transfer_id = _send(client_for(alice), bob).json()["id"]
    assert client_for(carol).get(f"/api/v1/payments/transfers/{transfer_id}").status_code == 404
    assert (
        client_for(carol).post(f"/api/v1/payments/transfers/{transfer_id}/accept", **{IDEM: "c"}).status_code
        == 404
    )
    own = client_for(alice).post(f"/api/v1/payments/transfers/{transfer_id}/accept", **{IDEM: "s"})
    assert own.status_code == 403 and own.json()["error"]["code"] == "not_receiver"
    assert client_for(bob).get(f"/api/v1/payments/transfers/{transfer_id}").json()["id"] == transfer_id
    assert [t["id"] for t in client_for(bob).get("/api/v1/payments/transfers").json()["results"]] == [
        transfer_id
    ]
    assert client_for(carol).get("/api/v1/payments/transfers").json()["results"] == []
    assert client_for(bob).get("/api/v1/payments/transfers/999999").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"amount": 0}, "invalid"),
        ({"amount": 10_001}, "insufficient_funds"),
        ({"pin": "12"}, "invalid"),
        ({"note": "x" * 101}, "invalid"),
        ({"currency": "USD"}, "unsupported_currency"),
    ],
)
def test_bad_transfers(client_for, friends, extra, code):
    alice, bob = friends
    response = _send(client_for(alice), bob, **extra)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert _balance(alice) == 10_000


@pytest.mark.django_db
def test_only_to_friends_and_not_to_self(client_for, payer, carol):
    client = client_for(payer)
    assert _send(client, carol).json()["error"]["code"] == "not_friends"
    assert _send(client, payer, key="self").json()["error"]["code"] == "self_transfer"


@pytest.mark.django_db
def test_no_pin_no_payment(client_for, alice, bob):
    befriend(alice, bob)
    fund(alice, 100)
    response = _send(client_for(alice), bob, amount=10)
    assert response.status_code == 403 and response.json()["error"]["code"] == "pin_not_set"


@pytest.mark.django_db
def test_limits_per_payment_and_per_day(client_for, friends, settings):
    alice, bob = friends
    settings.PAYMENTS_LIMITS = {
        "unverified": {"per_payment": 500, "per_day": 800},
        "verified": {"per_payment": 5_000, "per_day": 8_000},
    }
    client = client_for(alice)
    assert _send(client, bob, amount=501, key="1").json()["error"]["code"] == "limit_per_payment"
    assert _send(client, bob, amount=500, key="2").status_code == 201
    assert _send(client, bob, amount=301, key="3").json()["error"]["code"] == "limit_per_day"
    WalletSettings.objects.filter(user=alice).update(verification_level="verified")
    assert _send(client, bob, amount=3_000, key="4").status_code == 201


@pytest.mark.django_db
def test_expired_transfers_are_refunded_once_by_the_task(friends):
    alice, bob = friends
    transfer = services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=400, pin=PIN)
    assert tasks.refund_expired_transfers.delay().get() == 0
    Transfer.objects.filter(pk=transfer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Exception, match="expired"):
        services.transfer_accept(user_id=bob.pk, transfer_id=transfer.pk)
    assert tasks.refund_expired_transfers.delay().get() == 1
    assert tasks.refund_expired_transfers.delay().get() == 0
    assert services.transfer_refund_if_expired(transfer_id=transfer.pk) is False
    assert _balance(alice) == 10_000
    assert Event.objects.filter(user=bob, type=events.TRANSFER_REFUNDED).count() == 1
    assert Event.objects.filter(user=alice, type=events.TRANSFER_REFUNDED).count() == 1
    assert ledger_reconcile().ok


# --- event shapes --------------------------------------------------------------------------

TRANSFER_KEYS = {
    "id",
    "sender_id",
    "receiver_id",
    "amount",
    "currency",
    "note",
    "status",
    "created_at",
    "expires_at",
    "resolved_at",
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "event_type", [events.TRANSFER_CREATED, events.TRANSFER_ACCEPTED, events.TRANSFER_REFUNDED]
)
def test_transfer_event_shapes(friends, event_type):
    alice, bob = friends
    transfer = services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=100, pin=PIN, note="n")
    if event_type == events.TRANSFER_ACCEPTED:
        services.transfer_accept(user_id=bob.pk, transfer_id=transfer.pk)
    elif event_type == events.TRANSFER_REFUNDED:
        services.transfer_return(user_id=bob.pk, transfer_id=transfer.pk)
    for user in (alice, bob):
        data = Event.objects.get(user=user, type=event_type).data
        assert set(data) == TRANSFER_KEYS
        assert (data["id"], data["amount"], data["currency"], data["note"]) == (transfer.pk, 100, "CNY", "n")
        assert (
            data["status"]
            == {
                events.TRANSFER_CREATED: "pending",
                events.TRANSFER_ACCEPTED: "accepted",
                events.TRANSFER_REFUNDED: "refunded",
            }[event_type]
        )


@pytest.mark.django_db
def test_top_up_event_shape(alice):
    fund(alice, 250)
    fund(alice, 50)
    data = Event.objects.filter(user=alice, type=events.TOP_UP_SUCCEEDED).order_by("seq").last().data
    assert set(data) == {"id", "amount", "currency", "status", "balance"}
    assert (data["amount"], data["currency"], data["status"], data["balance"]) == (
        50,
        "CNY",
        "succeeded",
        300,
    )


@pytest.mark.django_db
def test_top_up_settle_is_idempotent(alice):
    fund(alice, 250)
    settled = TopUp.objects.get(user=alice)
    services.top_up_settle(top_up_id=settled.pk)
    assert _balance(alice) == 250


@pytest.mark.django_db
def test_transfer_list_query_count_is_flat(client_for, friends, django_assert_num_queries):
    alice, bob = friends
    for _ in range(5):
        services.transfer_create(sender_id=alice.pk, receiver_id=bob.pk, amount=10, pin=PIN)
    client = client_for(bob)
    with django_assert_num_queries(2):  # session+user, one page
        assert len(client.get("/api/v1/payments/transfers").json()["results"]) == 5
