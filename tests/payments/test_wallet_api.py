"""Wallet endpoints: balance, history, statement, PIN, top-ups."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import WalletSettings

from .conftest import PIN, fund, with_pin

IDEM = "HTTP_IDEMPOTENCY_KEY"


@pytest.mark.django_db
def test_wallet_shows_balance_limits_and_settings(client_for, alice, settings):
    fund(alice, 1_234)
    body = client_for(alice).get("/api/v1/payments/wallet").json()
    assert body == {
        "currency": "CNY",
        "balance": 1_234,
        "verification_level": "unverified",
        "limits": settings.PAYMENTS_LIMITS["unverified"],
        "pin_set": False,
        "pin_locked_until": None,
        "auto_accept_transfers": False,
    }


@pytest.mark.django_db
def test_wallet_settings_update(client_for, alice):
    client = client_for(alice)
    assert client.patch("/api/v1/payments/wallet", {"auto_accept_transfers": True}, format="json").json()[
        "auto_accept_transfers"
    ]
    bad = client.patch("/api/v1/payments/wallet", {"auto_accept_transfers": "maybe"}, format="json")
    assert bad.status_code == 400 and "auto_accept_transfers" in bad.json()["error"]["fields"]


@pytest.mark.django_db
def test_wallet_needs_authentication(api):
    assert api.get("/api/v1/payments/wallet").status_code == 401


@pytest.mark.django_db
def test_top_up_credits_the_wallet_and_replays(client_for, alice):
    client = client_for(alice)
    first = client.post("/api/v1/payments/wallet/top-ups", {"amount": 5_000}, format="json", **{IDEM: "t1"})
    again = client.post("/api/v1/payments/wallet/top-ups", {"amount": 5_000}, format="json", **{IDEM: "t1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert first.json()["status"] == "succeeded" and first.json()["provider"] == "sandbox"
    assert client.get("/api/v1/payments/wallet").json()["balance"] == 5_000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"amount": 100, "currency": "USD"}, "currency"),
        ({}, "amount"),
    ],
)
def test_top_up_bad_input(client_for, alice, body, field):
    response = client_for(alice).post("/api/v1/payments/wallet/top-ups", body, format="json", **{IDEM: "t"})
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_history_filters_and_pages(client_for, payer, bob):
    from payments import services

    from ..conftest import befriend

    befriend(payer, bob)
    services.transfer_create(sender_id=payer.pk, receiver_id=bob.pk, amount=300, pin=PIN, note="lunch")
    client = client_for(payer)
    items = client.get("/api/v1/payments/wallet/transactions").json()["results"]
    assert [(i["kind"], i["amount"]) for i in items] == [("transfer_send", -300), ("top_up", 10_000)]
    assert items[0]["memo"] == "lunch"
    assert [
        i["amount"]
        for i in client.get("/api/v1/payments/wallet/transactions?direction=out").json()["results"]
    ] == [-300]
    assert [
        i["kind"] for i in client.get("/api/v1/payments/wallet/transactions?kind=top_up").json()["results"]
    ] == ["top_up"]
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert client.get("/api/v1/payments/wallet/transactions", {"since": future}).json()["results"] == []
    page = client.get("/api/v1/payments/wallet/transactions?page_size=1").json()
    assert len(page["results"]) == 1 and page["next"]
    # Bob sees none of it.
    assert client_for(bob).get("/api/v1/payments/wallet/transactions").json()["results"] == []


@pytest.mark.django_db
def test_history_query_count_is_flat(client_for, alice, django_assert_num_queries):
    for _ in range(5):
        fund(alice, 10)
    client = client_for(alice)
    with django_assert_num_queries(2):  # session+user, one page
        client.get("/api/v1/payments/wallet/transactions")


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["kind=nope", "direction=sideways", "since=yesterday"])
def test_history_bad_filters(client_for, alice, query):
    response = client_for(alice).get(f"/api/v1/payments/wallet/transactions?{query}")
    assert response.status_code == 400


@pytest.mark.django_db
def test_monthly_statement_csv(client_for, alice, bob):
    fund(alice, 100)
    fund(alice, 50)
    fund(bob, 999)
    month = timezone.localtime().strftime("%Y-%m")
    response = client_for(alice).get(f"/api/v1/payments/wallet/statements/{month}.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["date", "entry_id", "kind", "memo", "amount", "currency", "balance"]
    assert [(r[2], r[4], r[6]) for r in rows[1:]] == [("top_up", "100", "100"), ("top_up", "50", "150")]


@pytest.mark.django_db
@pytest.mark.parametrize("month", ["2026-13", "26-01", "latest"])
def test_statement_bad_month(client_for, alice, month):
    assert client_for(alice).get(f"/api/v1/payments/wallet/statements/{month}.csv").status_code == 404


# --- PIN -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pin_set_change_and_reset(client_for, alice):
    client = client_for(alice)
    assert client.post("/api/v1/payments/wallet/pin", {"pin": "111111"}, format="json").status_code == 204
    again = client.post("/api/v1/payments/wallet/pin", {"pin": "222222"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "pin_already_set"
    wrong = client.put("/api/v1/payments/wallet/pin", {"old_pin": "999999", "pin": "222222"}, format="json")
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "invalid_pin"
    assert (
        client.put(
            "/api/v1/payments/wallet/pin", {"old_pin": "111111", "pin": "222222"}, format="json"
        ).status_code
        == 204
    )
    bad_password = client.post(
        "/api/v1/payments/wallet/pin/reset", {"password": "nope", "pin": "333333"}, format="json"
    )
    assert bad_password.status_code == 403
    reset = client.post(
        "/api/v1/payments/wallet/pin/reset",
        {"password": "correct horse battery", "pin": "333333"},
        format="json",
    )
    assert reset.status_code == 204
    assert client.get("/api/v1/payments/wallet").json()["pin_set"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("pin", ["12345", "1234567", "abcdef", "", "\uff11\uff12\uff13\uff14\uff15\uff16"])
def test_pin_format(client_for, alice, pin):
    response = client_for(alice).post("/api/v1/payments/wallet/pin", {"pin": pin}, format="json")
    assert response.status_code == 400
    assert "pin" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_five_wrong_pins_lock_payments_for_three_hours(client_for, alice, bob):
    from ..conftest import befriend

    with_pin(alice)
    fund(alice, 1_000)
    befriend(alice, bob)
    client = client_for(alice)

    def send(pin, key):
        body = {"receiver_id": bob.pk, "amount": 10, "pin": pin}
        return client.post("/api/v1/payments/transfers", body, format="json", **{IDEM: key})

    codes = [send("000000", f"w{i}").json()["error"]["code"] for i in range(5)]
    assert codes == ["invalid_pin"] * 4 + ["pin_locked"]
    locked = send(PIN, "right")
    assert locked.status_code == 403 and locked.json()["error"]["code"] == "pin_locked"
    until = WalletSettings.objects.get(user=alice).pin_locked_until
    assert timedelta(hours=2, minutes=59) < until - timezone.now() <= timedelta(hours=3)
    WalletSettings.objects.filter(user=alice).update(pin_locked_until=timezone.now() - timedelta(seconds=1))
    assert send(PIN, "later").status_code == 201


@pytest.mark.django_db
def test_admin_action_sets_the_verification_level(admin_client, client_for, alice, settings):
    from payments import services

    services.wallet_settings_get(user_id=alice.pk)
    response = admin_client.post(
        "/admin/payments/walletsettings/", {"action": "mark_verified", "_selected_action": [alice.pk]}
    )
    assert response.status_code == 302
    body = client_for(alice).get("/api/v1/payments/wallet").json()
    assert body["verification_level"] == "verified" and body["limits"] == settings.PAYMENTS_LIMITS["verified"]
