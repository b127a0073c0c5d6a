"""The Stripe provider with the real ``stripe`` library against a fake Stripe server, and the
signed webhook: replay, bad signature, unknown events, out-of-order events."""

from __future__ import annotations

import pytest

from payments.ledger import ledger_reconcile
from payments.models import AccountKind, Card, LedgerAccount, ProviderEvent, TopUp

from .fake_stripe import WEBHOOK_SECRET, FakeStripe

IDEM = "HTTP_IDEMPOTENCY_KEY"
WEBHOOK = "/api/v1/payments/webhooks/stripe"


@pytest.fixture
def fake_stripe(settings):
    with FakeStripe() as fake:
        settings.PAYMENTS_PROVIDER = "stripe"
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        yield fake


def _balance(user) -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner=user).first()
    return row.balance if row else 0


def _deliver(api, body: bytes, signature: str):
    return api.post(WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


def _link_card(client, pm="pm_card_visa"):
    setup = client.post("/api/v1/payments/cards/setup")
    assert setup.status_code == 201 and setup.json()["setup_intent_id"].startswith("seti_")
    return client.post("/api/v1/payments/cards", {"payment_method_id": pm}, format="json")


@pytest.mark.django_db
def test_link_list_and_remove_a_card(client_for, alice, bob, fake_stripe):
    client = client_for(alice)
    linked = _link_card(client)
    assert linked.status_code == 201
    card = linked.json()
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == ("visa", "4242", 8, 2030)
    assert [c["id"] for c in client.get("/api/v1/payments/cards").json()] == [card["id"]]
    attach = next(r for r in fake_stripe.requests if r["path"].endswith("/attach"))
    assert (
        attach["params"]["customer"].startswith("cus_") and attach["authorization"] == "Bearer sk_test_fake"
    )
    # One customer per user, reused.
    assert sum(r["path"] == "/v1/customers" for r in fake_stripe.requests) == 1
    assert client_for(bob).delete(f"/api/v1/payments/cards/{card['id']}").status_code == 404
    assert client_for(bob).get("/api/v1/payments/cards").json() == []
    assert client.delete(f"/api/v1/payments/cards/{card['id']}").status_code == 204
    assert not Card.objects.exists()
    assert any(r["path"] == "/v1/payment_methods/pm_card_visa/detach" for r in fake_stripe.requests)


@pytest.mark.django_db
def test_linking_a_missing_payment_method_is_refused(client_for, alice, fake_stripe):
    response = _link_card(client_for(alice), pm="pm_missing")
    assert response.status_code == 402 and response.json()["error"]["code"] == "card_rejected"
    blank = client_for(alice).post("/api/v1/payments/cards", {}, format="json")
    assert blank.status_code == 400


@pytest.mark.django_db
def test_top_up_is_credited_only_by_the_signed_webhook(client_for, api, alice, fake_stripe):
    client = client_for(alice)
    card_id = _link_card(client).json()["id"]
    response = client.post(
        "/api/v1/payments/wallet/top-ups",
        {"amount": 5_000, "card_id": card_id},
        format="json",
        **{IDEM: "k1"},
    )
    assert response.status_code == 201 and response.json()["status"] == "pending"
    assert _balance(alice) == 0
    top_up = TopUp.objects.get()
    intent = fake_stripe.payment_intents[top_up.provider_ref]
    assert intent["metadata"] == {"top_up_id": str(top_up.id)} and intent["amount"] == 5_000
    pi_request = next(r for r in fake_stripe.requests if r["path"] == "/v1/payment_intents")
    assert pi_request["idempotency_key"] == f"topup-{top_up.id}"

    body, signature = fake_stripe.event("payment_intent.succeeded", intent, event_id="evt_1")
    first = _deliver(api, body, signature)
    assert first.status_code == 200 and first.json() == {"received": True, "outcome": "credited"}
    assert _balance(alice) == 5_000
    # Replayed: harmless.
    assert _deliver(api, body, signature).json()["outcome"] == "duplicate"
    # The same fact under another event id (Stripe retries with the same id, but be safe): no second credit.
    body2, signature2 = fake_stripe.event("payment_intent.succeeded", intent, event_id="evt_2")
    assert _deliver(api, body2, signature2).json()["outcome"] == "already_credited"
    assert _balance(alice) == 5_000
    # Out of order: a late failure after the success changes nothing.
    body3, signature3 = fake_stripe.event("payment_intent.payment_failed", intent, event_id="evt_3")
    assert _deliver(api, body3, signature3).json()["outcome"] == "ignored"
    top_up.refresh_from_db()
    assert top_up.status == "succeeded" and _balance(alice) == 5_000
    assert ledger_reconcile().ok


@pytest.mark.django_db
def test_failure_then_success_credits_once(client_for, api, alice, fake_stripe):
    client = client_for(alice)
    card_id = _link_card(client).json()["id"]
    client.post(
        "/api/v1/payments/wallet/top-ups", {"amount": 700, "card_id": card_id}, format="json", **{IDEM: "k"}
    )
    intent = fake_stripe.payment_intents[TopUp.objects.get().provider_ref]
    assert (
        _deliver(api, *fake_stripe.event("payment_intent.payment_failed", intent)).json()["outcome"]
        == "failed"
    )
    assert (
        _deliver(api, *fake_stripe.event("payment_intent.succeeded", intent)).json()["outcome"] == "credited"
    )
    assert _balance(alice) == 700


@pytest.mark.django_db
def test_declined_card_and_missing_card(client_for, alice, fake_stripe):
    client = client_for(alice)
    declined_card = _link_card(client, pm="pm_card_chargeDeclined").json()["id"]
    declined = client.post(
        "/api/v1/payments/wallet/top-ups",
        {"amount": 100, "card_id": declined_card},
        format="json",
        **{IDEM: "d"},
    )
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "card_declined"
    assert TopUp.objects.get().status == "failed"
    no_card = client.post("/api/v1/payments/wallet/top-ups", {"amount": 100}, format="json", **{IDEM: "n"})
    assert no_card.status_code == 400 and no_card.json()["error"]["code"] == "card_required"
    other = client.post(
        "/api/v1/payments/wallet/top-ups", {"amount": 100, "card_id": 999999}, format="json", **{IDEM: "o"}
    )
    assert other.status_code == 400 and "card_id" in other.json()["error"]["fields"]


@pytest.mark.django_db
def test_bad_signatures_are_rejected(api, fake_stripe):
    intent = {"id": "pi_x", "object": "payment_intent", "amount": 1, "currency": "cny"}
    body, _sig = fake_stripe.event("payment_intent.succeeded", intent)
    _b, wrong_secret = fake_stripe.event("payment_intent.succeeded", intent, secret="whsec_other")
    for header in ["", "t=1,v1=deadbeef", wrong_secret]:
        response = _deliver(api, body, header)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"
    _b, stale = fake_stripe.event("payment_intent.succeeded", intent, timestamp=1_000_000)
    assert _deliver(api, _b, stale).status_code == 400  # outside the 5-minute tolerance
    tampered = body.replace(b'"amount": 1', b'"amount": 9')
    assert _deliver(api, tampered, _sig).status_code == 400
    assert not ProviderEvent.objects.exists()


@pytest.mark.django_db
def test_garbage_body_with_valid_signature_is_400(api, fake_stripe):
    import hashlib
    import hmac
    import time

    t = int(time.time())
    body = b"not json"
    sig = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    response = _deliver(api, body, f"t={t},v1={sig}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_payload"


@pytest.mark.django_db
def test_unknown_events_and_unknown_objects_are_recorded_and_ignored(api, fake_stripe):
    body, sig = fake_stripe.event("customer.created", {"id": "cus_1", "object": "customer"})
    assert _deliver(api, body, sig).json()["outcome"] == "ignored"
    body, sig = fake_stripe.event(
        "payment_intent.succeeded", {"id": "pi_nobody", "amount": 1, "currency": "cny"}
    )
    assert _deliver(api, body, sig).json()["outcome"] == "unknown_object"
    assert ProviderEvent.objects.count() == 2


@pytest.mark.django_db
def test_an_amount_mismatch_is_not_credited(client_for, api, alice, fake_stripe):
    client = client_for(alice)
    card_id = _link_card(client).json()["id"]
    client.post(
        "/api/v1/payments/wallet/top-ups", {"amount": 700, "card_id": card_id}, format="json", **{IDEM: "k"}
    )
    intent = dict(fake_stripe.payment_intents[TopUp.objects.get().provider_ref], amount_received=70_000)
    assert (
        _deliver(api, *fake_stripe.event("payment_intent.succeeded", intent)).json()["outcome"]
        == "amount_mismatch"
    )
    assert _balance(alice) == 0


@pytest.mark.django_db
def test_webhook_is_404_without_a_configured_secret(api, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert api.post(WEBHOOK, data=b"{}", content_type="application/json").status_code == 404


@pytest.mark.django_db
def test_sandbox_cards(client_for, alice):
    client = client_for(alice)
    assert client.post("/api/v1/payments/cards/setup").status_code == 201
    card = client.post("/api/v1/payments/cards", {"payment_method_id": "pm_demo"}, format="json").json()
    assert card["provider"] == "sandbox" and card["last4"] == "4242"
    top_up = client.post(
        "/api/v1/payments/wallet/top-ups",
        {"amount": 100, "card_id": card["id"]},
        format="json",
        **{IDEM: "s"},
    )
    assert top_up.json()["status"] == "succeeded"
