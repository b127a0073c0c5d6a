"""Refunds through the orders API: full, partial, several, never more than paid, fee back in proportion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments import events
from payments.merchants import fee_for, fee_refund_for
from payments.models import AccountKind, JournalEntry, LedgerAccount, MerchantOrder, MerchantRefund
from superapp.core.models import Event

from .merchant_client import funded_payer, open_merchant, pay
from .test_orders_api import code, fees, merchant_balance, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(bob):
    return open_merchant(bob)


@pytest.fixture
def paid(shop, alice, client_for):
    """A paid order of 25.00 (fee 0.15)."""
    funded_payer(alice)
    order_id = shop.create_order(amount=2_500).json()["id"]
    assert pay(client_for(alice), MerchantOrder.objects.get(pk=order_id).code).status_code == 200
    return MerchantOrder.objects.get(pk=order_id)


def test_full_refund_returns_everything_including_the_fee(shop, paid, alice):
    response = shop.refund("refund-0001", 2_500, reason="out of beans")
    assert response.status_code == 201 and shop.verified(response)
    body = response.json()
    assert body["amount"] == 2_500 and body["fee_refund"] == 15 and body["source"] == "pending"
    assert body["status"] == "succeeded" and body["out_trade_no"] == "order-0001"
    assert wallet(alice) == 10_000 and merchant_balance(shop) == 0 and fees() == 0
    order = shop.query().json()
    assert order["status"] == "refunded" and order["refunded_amount"] == 2_500
    entry = JournalEntry.objects.get(reference=f"refund:{body['id']}")
    assert entry.kind == "merchant_refund" and entry.memo == "out of beans"
    event = Event.objects.get(user=alice, type=events.ORDER_REFUNDED)
    assert event.data["refund"] == {"id": body["id"], "amount": 2_500} and event.data["status"] == "refunded"
    assert shop.get("/api/v1/pay/refunds/refund-0001").json() == body


def test_several_partial_refunds_never_more_than_paid(shop, paid, alice):
    assert shop.refund("refund-0001", 1_000).json()["fee_refund"] == 6
    assert shop.refund("refund-0002", 1_000).json()["fee_refund"] == 6
    over = shop.refund("refund-0003", 501)
    assert over.status_code == 400 and code(over) == "refund_exceeds_paid"
    assert over.json()["error"]["fields"] == {"amount": ["500"]}
    last = shop.refund("refund-0004", 500).json()
    assert last["fee_refund"] == 3  # 6 + 6 + 3 = the whole fee of 15
    assert wallet(alice) == 10_000 and merchant_balance(shop) == 0 and fees() == 0
    assert code(shop.refund("refund-0005", 1)) == "refund_exceeds_paid"
    assert MerchantRefund.objects.count() == 3


def test_out_refund_no_is_idempotent(shop, paid, alice):
    first = shop.refund("refund-0001", 700)
    again = shop.refund("refund-0001", 700)
    assert again.status_code == 200 and again.json() == first.json()
    conflict = shop.refund("refund-0001", 800)
    assert conflict.status_code == 409 and code(conflict) == "out_refund_no_conflict"
    assert MerchantRefund.objects.count() == 1 and wallet(alice) == 7_500 + 700


def test_unpaid_and_closed_orders_cannot_be_refunded(shop):
    shop.create_order()
    unpaid = shop.refund("refund-0001", 100)
    assert unpaid.status_code == 409 and code(unpaid) == "order_not_paid"
    shop.post("/api/v1/pay/orders/out-trade-no/order-0001/close")
    assert code(shop.refund("refund-0002", 100)) == "order_not_paid"
    assert (
        not MerchantRefund.objects.exists()
        and not JournalEntry.objects.filter(kind="merchant_refund").exists()
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"out_refund_no": "r-000001", "amount": 0, "out_trade_no": "order-0001"}, "amount"),
        ({"out_refund_no": "r", "amount": 10, "out_trade_no": "order-0001"}, "out_refund_no"),
        ({"out_refund_no": "r-000001", "amount": 10}, "order_id"),
        (
            {"out_refund_no": "r-000001", "amount": 10, "out_trade_no": "order-0001", "order_id": 1},
            "order_id",
        ),
    ],
)
def test_bad_refunds_are_refused(shop, paid, body, field):
    response = shop.post("/api/v1/pay/refunds", body)
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not MerchantRefund.objects.exists()


def test_refund_by_order_id(shop, paid):
    response = shop.post(
        "/api/v1/pay/refunds", {"out_refund_no": "refund-0001", "order_id": paid.id, "amount": 1}
    )
    assert response.status_code == 201 and response.json()["fee_refund"] == 0


def test_after_settlement_refunds_come_from_the_available_balance(shop, paid, alice):
    from payments import settlement

    MerchantOrder.objects.filter(pk=paid.pk).update(settlement_date=paid.settlement_date.replace(year=2020))
    batch, created = settlement.settlement_settle(
        merchant_id=shop.merchant.id, currency="CNY", day=paid.settlement_date.replace(year=2020)
    )
    assert created and batch.net == 2_485
    assert merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 2_485
    refund = shop.refund("refund-0001", 1_000).json()
    assert refund["source"] == "available"
    assert (
        merchant_balance(shop, AccountKind.MERCHANT_AVAILABLE) == 2_485 - 994 and merchant_balance(shop) == 0
    )


def test_a_refund_the_merchant_cannot_cover_is_refused(shop, paid, alice, bob):
    from payments import merchants, settlement

    day = paid.settlement_date.replace(year=2020)
    MerchantOrder.objects.filter(pk=paid.pk).update(settlement_date=day)
    settlement.settlement_settle(merchant_id=shop.merchant.id, currency="CNY", day=day)
    from .conftest import with_pin

    with_pin(bob)
    merchants.merchant_payout(user_id=bob.pk, merchant_id=shop.merchant.id, amount=2_000, pin="123456")
    response = shop.refund("refund-0001", 1_000)
    assert response.status_code == 409 and code(response) == "merchant_balance_insufficient"
    assert wallet(alice) == 7_500 and MerchantOrder.objects.get().refunded_amount == 0
    assert not MerchantRefund.objects.exists()


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(min_value=1, max_value=10**9),
    rate=st.integers(min_value=0, max_value=10_000),
    cuts=st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=0, max_size=6),
)
def test_fee_refunds_add_up_to_the_fee(amount, rate, cuts):
    """Any sequence of partial refunds ending with a full refund gives back exactly the fee, and
    no step gives back more than the refund (the merchant never pays a negative share)."""
    fee = fee_for(amount=amount, rate_bps=rate)
    assert 0 <= fee <= amount
    points = sorted({int(amount * c) for c in cuts} | {amount})
    refunded = fee_refunded = 0
    for point in points:
        step = point - refunded
        if step <= 0:
            continue
        back = fee_refund_for(
            fee=fee, amount=amount, refunded_before=refunded, fee_refunded_before=fee_refunded, refund=step
        )
        assert 0 <= back <= step
        refunded, fee_refunded = point, fee_refunded + back
    assert refunded == amount and fee_refunded == fee


def test_refund_payload_shape(shop, paid):
    shop.refund("refund-0001", 100)
    refund = MerchantRefund.objects.select_related("order").get()
    assert set(events.merchant_refund_payload(refund)) == {
        "id", "out_refund_no", "order_id", "out_trade_no", "status", "amount", "fee_refund", "currency",
        "reason", "source", "initiated_by", "created_at",
    }  # fmt: skip
    assert (
        refund.fee_refund == 1 and LedgerAccount.objects.get(kind=AccountKind.FEES).balance == 14
    )  # 0.6 rounds to 1
