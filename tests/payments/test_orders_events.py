"""One payload-shape test per Payments II event type (what the payer's and owner's apps receive)."""

from __future__ import annotations

import pytest

from payments import events, settlement
from payments.models import MerchantOrder
from superapp.core.models import Event

from .merchant_client import funded_payer, open_merchant, pay

pytestmark = pytest.mark.django_db

CHECKOUT_KEYS = {
    "id", "code", "merchant", "trade_type", "description", "amount", "currency", "status", "refunded_amount",
    "created_at", "expire_at", "paid_at",
}  # fmt: skip


def only(user, type_: str) -> dict:
    [event] = Event.objects.filter(user=user, type=type_)
    return event.data


def test_every_payments_ii_event_shape(alice, bob, client_for, settings):
    settings.PAYMENTS_MICROPAY_NO_PIN_LIMIT = 100
    shop = open_merchant(bob)
    funded_payer(alice)
    app = client_for(alice)
    order_id = shop.create_order(amount=2_500).json()["id"]
    pay(app, MerchantOrder.objects.get(pk=order_id).code)
    shop.refund("refund-0001", 500)
    auth_code = app.post("/api/v1/payments/payment-codes").json()["code"]
    shop.micropay(auth_code, amount=300)  # over the no-PIN limit of this test
    shop.post("/api/v1/pay/orders/out-trade-no/scan-0001/close")
    MerchantOrder.objects.filter(pk=order_id).update(settlement_date="2026-01-14")
    settlement.settlements_run()

    paid = only(alice, events.ORDER_PAID)
    assert set(paid) == CHECKOUT_KEYS and paid["merchant"] == {"id": shop.merchant.id, "name": "Corner Cafe"}
    assert paid["status"] == "paid" and paid["amount"] == 2_500
    refunded = only(alice, events.ORDER_REFUNDED)
    assert set(refunded) == CHECKOUT_KEYS | {"refund"} and refunded["refunded_amount"] == 500
    assert set(refunded["refund"]) == {"id", "amount"}
    confirm = only(alice, events.ORDER_CONFIRM_REQUIRED)
    assert set(confirm) == CHECKOUT_KEYS and confirm["status"] == "user_paying" and confirm["amount"] == 300
    closed = only(alice, events.ORDER_CLOSED)
    assert set(closed) == CHECKOUT_KEYS and closed["status"] == "closed" and closed["code"] == confirm["code"]
    received = only(bob, events.MERCHANT_PAYMENT_RECEIVED)
    assert received == {
        "merchant_id": shop.merchant.id,
        "order_id": order_id,
        "trade_type": "native",
        "description": "2 coffees",
        "amount": 2_500,
        "fee": 15,
        "currency": "CNY",
        "paid_at": paid["paid_at"],
    }
    settled = only(bob, events.MERCHANT_SETTLED)
    assert set(settled) == {
        "id", "merchant_id", "date", "currency", "order_count", "refund_count", "gross", "fees", "refunds",
        "fee_refunds", "net", "entry_id", "created_at",
    }  # fmt: skip
    assert (settled["date"], settled["gross"], settled["refunds"], settled["net"]) == (
        "2026-01-14",
        2_500,
        500,
        1_988,
    )
    assert set(events.ALL_TYPES) >= {
        events.ORDER_PAID,
        events.ORDER_REFUNDED,
        events.ORDER_CONFIRM_REQUIRED,
        events.ORDER_CLOSED,
        events.MERCHANT_PAYMENT_RECEIVED,
        events.MERCHANT_SETTLED,
    }
