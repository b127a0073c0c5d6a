"""Dynamic and static QR payments through the orders API and the payer's app."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from payments import events, orders, tasks
from payments.models import AccountKind, JournalEntry, LedgerAccount, MerchantOrder, Posting
from superapp.core.models import Event

from .conftest import PIN, fund, with_pin
from .merchant_client import IDEM, funded_payer, open_merchant, pay

pytestmark = pytest.mark.django_db


def wallet(user) -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner=user).first()
    return row.balance if row else 0


def merchant_balance(shop, kind=AccountKind.MERCHANT) -> int:
    return LedgerAccount.objects.get(kind=kind, merchant=shop.merchant).balance


def fees() -> int:
    row = LedgerAccount.objects.filter(kind=AccountKind.FEES).first()
    return row.balance if row else 0


def code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def shop(bob):
    return open_merchant(bob)


@pytest.fixture
def payer(alice):
    return funded_payer(alice)


def test_dynamic_qr_order_paid_with_the_pin(shop, payer, client_for, django_capture_on_commit_callbacks):
    created = shop.create_order(amount=2_500, attach="table 7")
    assert created.status_code == 201 and shop.verified(created)
    order = created.json()
    assert order["status"] == "created" and order["amount"] == 2_500 and order["attach"] == "table 7"
    assert order["code_url"].startswith("superapp://pay/order?code=")
    pay_code = order["code_url"].split("code=")[1]

    app = client_for(payer)
    seen = app.get(f"/api/v1/payments/checkout/orders/{pay_code}")
    assert seen.status_code == 200
    assert seen.json()["merchant"]["name"] == "Corner Cafe" and seen.json()["amount"] == 2_500
    with django_capture_on_commit_callbacks(execute=True):
        paid = pay(app, pay_code, amount=2_500)
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid" and paid.json()["paid_at"]

    # 0.6 % of 25.00 is 0.15: the merchant gets 24.85, the platform 0.15, the payer paid 25.00.
    assert wallet(payer) == 10_000 - 2_500
    assert merchant_balance(shop) == 2_485 and fees() == 15
    entry = JournalEntry.objects.get(reference=f"order:{order['id']}:pay")
    assert entry.kind == "merchant_payment"
    assert sorted(Posting.objects.filter(entry=entry).values_list("amount", flat=True)) == [-2_500, 15, 2_485]

    queried = shop.query()
    assert queried.status_code == 200 and shop.verified(queried)
    body = queried.json()
    assert body["status"] == "paid" and body["fee"] == 15 and body["payer"].startswith("u_")
    # Merchants never learn user ids: a stable pseudonym per merchant (WeChat's openid).
    assert body["payer"] == events.payer_ref(merchant_id=shop.merchant.id, user_id=payer.pk)
    assert body["payer"] != events.payer_ref(merchant_id=shop.merchant.id + 1, user_id=payer.pk)
    assert shop.get(f"/api/v1/pay/orders/{order['id']}").json() == body

    receipt = Event.objects.get(user=payer, type=events.ORDER_PAID)
    assert receipt.data == events.checkout_order_payload(
        MerchantOrder.objects.select_related("merchant").get()
    )
    received = Event.objects.get(user=shop.merchant.owner, type=events.MERCHANT_PAYMENT_RECEIVED)
    assert received.data["amount"] == 2_500 and received.data["fee"] == 15


def test_create_is_idempotent_on_out_trade_no(shop):
    first = shop.create_order()
    again = shop.create_order()
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    changed = shop.create_order(amount=1_001)
    assert changed.status_code == 409 and code(changed) == "out_trade_no_conflict"
    assert code(shop.create_order(description="3 coffees")) == "out_trade_no_conflict"
    assert MerchantOrder.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"out_trade_no": "x"}, "out_trade_no"),
        ({"out_trade_no": "has space 1"}, "out_trade_no"),
        ({"description": ""}, "description"),
        ({"currency": "USD"}, "currency"),
        ({"expire_seconds": 5}, "expire_seconds"),
        ({"notify_url": "ftp://example.com/x"}, "notify_url"),
    ],
)
def test_bad_orders_are_refused(shop, body, field):
    response = shop.post(
        "/api/v1/pay/orders", {"out_trade_no": "order-0001", "amount": 100, "description": "d", **body}
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert shop.verified(response)
    assert not MerchantOrder.objects.exists()


@pytest.mark.parametrize("notify_url", ["http://[::1", "http://a]b.com/", "https://[zz]/n"])
def test_a_notify_url_with_broken_brackets_is_a_400_not_a_500(shop, payer, notify_url):
    created = shop.create_order(notify_url=notify_url)
    scanned = shop.micropay("101234567890123456", notify_url=notify_url)
    for response in (created, scanned):
        assert response.status_code == 400, response.content
        assert code(response) == "webhook_url_invalid" and "notify_url" in response.json()["error"]["fields"]
    assert not MerchantOrder.objects.exists()


def test_paying_twice_is_refused_and_moves_money_once(shop, payer, client_for):
    pay_code = MerchantOrder.objects.get(pk=shop.create_order().json()["id"]).code
    app = client_for(payer)
    assert pay(app, pay_code, key="one").status_code == 200
    again = pay(app, pay_code, key="two")
    assert again.status_code == 409 and code(again) == "order_paid"
    replay = pay(app, pay_code, key="one")  # the same request retried: the first answer
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert wallet(payer) == 9_000 and merchant_balance(shop) == 994


def test_amount_mismatch_wrong_pin_and_insufficient_funds_move_nothing(shop, payer, client_for, carol):
    pay_code = MerchantOrder.objects.get(pk=shop.create_order(amount=3_000).json()["id"]).code
    app = client_for(payer)
    mismatch = pay(app, pay_code, key="a", amount=300)
    assert mismatch.status_code == 409 and code(mismatch) == "amount_mismatch"
    wrong = pay(app, pay_code, key="b", pin="000000")
    assert wrong.status_code == 403 and code(wrong) == "invalid_pin"
    with_pin(carol)
    fund(carol, 100)
    poor = pay(client_for(carol), pay_code, key="c")
    assert poor.status_code == 400 and code(poor) == "insufficient_funds"
    assert wallet(payer) == 10_000 and wallet(carol) == 100 and merchant_balance(shop) == 0 and fees() == 0
    assert MerchantOrder.objects.get().status == "created"


def test_over_the_payers_limit_is_refused(shop, payer, client_for, settings):
    settings.PAYMENTS_LIMITS = {"unverified": {"per_payment": 5_000, "per_day": 6_000}}
    first = MerchantOrder.objects.get(pk=shop.create_order(amount=4_000).json()["id"]).code
    second = MerchantOrder.objects.get(pk=shop.create_order("order-0002", amount=4_000).json()["id"]).code
    assert pay(client_for(payer), first, key="1").status_code == 200
    over = pay(client_for(payer), second, key="2")
    assert over.status_code == 400 and code(over) == "limit_per_day"  # merchant payments count too


def test_closed_and_expired_orders_cannot_be_paid(shop, payer, client_for):
    closed_code = MerchantOrder.objects.get(pk=shop.create_order().json()["id"]).code
    close = shop.post("/api/v1/pay/orders/out-trade-no/order-0001/close")
    assert close.status_code == 200 and close.json()["status"] == "closed" and shop.verified(close)
    assert shop.post("/api/v1/pay/orders/out-trade-no/order-0001/close").json()["status"] == "closed"
    refused = pay(client_for(payer), closed_code, key="1")
    assert refused.status_code == 409 and code(refused) == "order_closed"

    order = MerchantOrder.objects.get(pk=shop.create_order("order-0002").json()["id"])
    MerchantOrder.objects.filter(pk=order.pk).update(expire_at=timezone.now() - timedelta(seconds=1))
    expired = pay(client_for(payer), order.code, key="2")
    assert expired.status_code == 409 and code(expired) == "order_expired"
    assert tasks.close_expired_orders.apply().result == 1
    assert MerchantOrder.objects.get(pk=order.pk).status == "closed"
    assert wallet(payer) == 10_000


def test_a_paid_order_cannot_be_closed(shop, payer, client_for):
    order_id = shop.create_order().json()["id"]
    pay(client_for(payer), MerchantOrder.objects.get(pk=order_id).code)
    response = shop.post(f"/api/v1/pay/orders/{order_id}/close")
    assert response.status_code == 409 and code(response) == "order_paid"


def test_another_merchants_orders_are_not_found(shop, carol):
    order_id = shop.create_order().json()["id"]
    other = open_merchant(carol, name="Rival")
    assert other.get(f"/api/v1/pay/orders/{order_id}").status_code == 404
    assert other.query().status_code == 404
    assert other.post(f"/api/v1/pay/orders/{order_id}/close").status_code == 404
    assert other.refund("refund-0001", 100).status_code == 404
    assert MerchantOrder.objects.get().status == "created"


def test_unknown_codes_are_404(client_for, payer):
    app = client_for(payer)
    assert app.get("/api/v1/payments/checkout/orders/nope").status_code == 404
    assert pay(app, "nope").status_code == 404
    assert app.get("/api/v1/payments/checkout/merchants/nope").status_code == 404


def test_the_order_qr_is_a_png_of_its_code_url(shop):
    order_id = shop.create_order().json()["id"]
    response = shop.get(f"/api/v1/pay/orders/{order_id}/qr.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert shop.verified(response)
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size[0] > 100


def test_static_qr_the_payer_types_the_amount(shop, payer, client_for, django_capture_on_commit_callbacks):
    app = client_for(payer)
    static_code = shop.merchant.static_code
    seen = app.get(f"/api/v1/payments/checkout/merchants/{static_code}")
    assert seen.json() == {"id": shop.merchant.id, "name": "Corner Cafe", "currency": "CNY"}
    body = {"amount": 250, "pin": PIN, "note": "noodles"}
    url = f"/api/v1/payments/checkout/merchants/{static_code}/pay"
    with django_capture_on_commit_callbacks(execute=True):
        paid = app.post(url, body, format="json", **{IDEM: "s1"})
    assert paid.status_code == 201, paid.content
    assert paid.json()["status"] == "paid" and paid.json()["trade_type"] == "static_qr"
    assert paid.json()["description"] == "noodles"
    # 0.6 % of 2.50 is 0.015: rounded half up to 0.02.
    assert wallet(payer) == 9_750 and merchant_balance(shop) == 248 and fees() == 2
    # The merchant sees it among its orders, with its own number.
    assert shop.query(MerchantOrder.objects.get().out_trade_no).json()["status"] == "paid"
    replay = app.post(url, body, format="json", **{IDEM: "s1"})
    assert replay.json() == paid.json() and MerchantOrder.objects.count() == 1


def test_static_qr_bad_input(shop, payer, client_for):
    app = client_for(payer)
    url = f"/api/v1/payments/checkout/merchants/{shop.merchant.static_code}/pay"
    assert app.post(url, {"amount": 0, "pin": PIN}, format="json", **{IDEM: "1"}).status_code == 400
    assert app.post(url, {"amount": 100}, format="json", **{IDEM: "2"}).status_code == 400
    wrong = app.post(url, {"amount": 100, "pin": "999999"}, format="json", **{IDEM: "3"})
    assert code(wrong) == "invalid_pin"
    assert app.post(url, {"amount": 100, "pin": PIN}, format="json").status_code == 400  # no Idempotency-Key
    assert wallet(payer) == 10_000 and not MerchantOrder.objects.exists()


def test_a_suspended_merchant_takes_no_orders_or_payments(shop, payer, client_for, admin_user):
    pay_code = MerchantOrder.objects.get(pk=shop.create_order().json()["id"]).code
    from payments import merchants

    merchants.merchant_staff_update(actor_id=admin_user.pk, merchant_id=shop.merchant.id, status="suspended")
    refused = shop.create_order("order-0002")
    assert refused.status_code == 403 and code(refused) == "merchant_suspended"
    assert code(pay(client_for(payer), pay_code)) == "merchant_suspended"
    static = client_for(payer).post(
        f"/api/v1/payments/checkout/merchants/{shop.merchant.static_code}/pay",
        {"amount": 100, "pin": PIN},
        format="json",
        **{IDEM: "s"},
    )
    assert code(static) == "merchant_suspended"
    assert wallet(payer) == 10_000


def test_fee_rounding_is_half_up():
    from payments.merchants import fee_for

    assert [fee_for(amount=a, rate_bps=60) for a in (1, 83, 84, 250, 1_000, 2_500)] == [0, 0, 1, 2, 6, 15]
    assert fee_for(amount=999, rate_bps=10_000) == 999 and fee_for(amount=999, rate_bps=0) == 0


def test_order_payload_shapes(shop, payer, client_for):
    order = MerchantOrder.objects.select_related("merchant").get(pk=shop.create_order().json()["id"])
    assert set(events.merchant_order_payload(order)) == {
        "id", "out_trade_no", "trade_type", "status", "description", "attach", "amount", "currency", "fee",
        "refunded_amount", "payer", "code_url", "created_at", "expire_at", "paid_at", "closed_at", "settlement_date",
    }  # fmt: skip
    assert (
        orders.business_day(timezone.now())
        == timezone.localtime(timezone.now(), timezone=orders._settlement_tz()).date()
    )


def test_huge_numbers_are_4xx_never_500(shop, payer, client_for, bob):
    huge = 10**30
    assert shop.create_order(amount=huge).status_code == 400
    assert shop.get(f"/api/v1/pay/orders/{huge}").status_code == 404
    assert shop.post(f"/api/v1/pay/orders/{huge}/close").status_code == 404
    refund = shop.post(
        "/api/v1/pay/refunds", {"out_refund_no": "refund-0001", "order_id": huge, "amount": huge}
    )
    assert refund.status_code == 400 and {"order_id", "amount"} <= set(refund.json()["error"]["fields"])
    pay_code = MerchantOrder.objects.get(pk=shop.create_order().json()["id"]).code
    assert pay(client_for(payer), pay_code, amount=huge).status_code == 400
    static = client_for(payer).post(
        f"/api/v1/payments/checkout/merchants/{shop.merchant.static_code}/pay",
        {"amount": huge, "pin": PIN},
        format="json",
        **{IDEM: "h"},
    )
    assert static.status_code == 400
    with_pin(bob)
    payout = client_for(bob).post(
        f"/api/v1/payments/merchants/{shop.merchant.id}/payouts",
        {"amount": huge, "pin": PIN},
        format="json",
        **{IDEM: "p"},
    )
    assert payout.status_code == 400
    assert wallet(payer) == 10_000


def test_reads_cost_two_queries(shop, payer, client_for, django_assert_num_queries):
    order = MerchantOrder.objects.get(pk=shop.create_order().json()["id"])
    with django_assert_num_queries(2):  # the key with its merchant and owner; the order
        assert shop.get(f"/api/v1/pay/orders/{order.id}").status_code == 200
    with django_assert_num_queries(2):
        assert shop.query().status_code == 200
    app = client_for(payer)
    with django_assert_num_queries(2):  # the session with its user; the order with its merchant
        assert app.get(f"/api/v1/payments/checkout/orders/{order.code}").status_code == 200
