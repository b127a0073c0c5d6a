"""Payment codes: the payer shows a one-time code, the merchant scans and charges it (micropay)."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from payments import events
from payments.models import MerchantOrder, PaymentCode
from payments.payment_codes import CODE_RE
from superapp.core.models import Event

from .conftest import fund, with_pin
from .merchant_client import funded_payer, open_merchant, pay
from .test_orders_api import code, merchant_balance, wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(bob):
    return open_merchant(bob)


@pytest.fixture
def payer(alice):
    return funded_payer(alice)


def new_code(client) -> str:
    response = client.post("/api/v1/payments/payment-codes")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()["code"]


def test_a_payment_code_is_18_digits_with_a_qr_png(payer, client_for):
    response = client_for(payer).post("/api/v1/payments/payment-codes")
    body = response.json()
    assert CODE_RE.fullmatch(body["code"]) and len(body["code"]) == 18
    image = Image.open(io.BytesIO(base64.b64decode(body["qr_png_base64"])))
    assert image.format == "PNG"
    row = PaymentCode.objects.get(user=payer)
    assert body["code"] not in row.digest  # only a keyed digest is stored
    assert 55 <= (row.expires_at - row.created_at).total_seconds() <= 60


def test_under_the_no_pin_limit_the_merchant_is_paid_at_once(shop, payer, client_for):
    auth_code = new_code(client_for(payer))
    response = shop.micropay(auth_code, amount=500)
    assert response.status_code == 201, response.content
    assert shop.verified(response)
    body = response.json()
    assert body["status"] == "paid" and body["trade_type"] == "micropay" and body["fee"] == 3
    assert wallet(payer) == 9_500 and merchant_balance(shop) == 497
    assert Event.objects.filter(user=payer, type=events.ORDER_PAID).exists()
    again = shop.micropay(auth_code, amount=500)  # the merchant's retry: same out_trade_no and code
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert wallet(payer) == 9_500


def test_over_the_limit_the_payer_confirms_with_the_pin(shop, payer, client_for, settings):
    settings.PAYMENTS_MICROPAY_NO_PIN_LIMIT = 1_000
    app = client_for(payer)
    waiting = shop.micropay(new_code(app), amount=4_000)
    assert waiting.status_code == 201 and waiting.json()["status"] == "user_paying"
    assert wallet(payer) == 10_000
    prompt = Event.objects.get(user=payer, type=events.ORDER_CONFIRM_REQUIRED)
    assert prompt.data["amount"] == 4_000 and prompt.data["merchant"]["name"] == "Corner Cafe"
    assert shop.query("scan-0001").json()["status"] == "user_paying"  # the merchant polls

    wrong = pay(app, prompt.data["code"], key="w", pin="000000")
    assert code(wrong) == "invalid_pin" and wallet(payer) == 10_000
    confirmed = pay(app, prompt.data["code"], key="ok")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "paid"
    assert shop.query("scan-0001").json()["status"] == "paid"
    assert wallet(payer) == 6_000 and merchant_balance(shop) == 4_000 - 24


def test_only_the_codes_owner_can_confirm(shop, payer, client_for, carol, settings):
    settings.PAYMENTS_MICROPAY_NO_PIN_LIMIT = 1_000
    shop.micropay(new_code(client_for(payer)), amount=4_000)
    order_code = MerchantOrder.objects.get().code
    funded_payer(carol)
    refused = pay(client_for(carol), order_code)
    assert refused.status_code == 403 and code(refused) == "not_your_order"
    assert wallet(carol) == 10_000


def test_the_merchant_can_close_a_waiting_order(shop, payer, client_for, settings):
    settings.PAYMENTS_MICROPAY_NO_PIN_LIMIT = 1_000
    app = client_for(payer)
    shop.micropay(new_code(app), amount=4_000)
    closed = shop.post("/api/v1/pay/orders/out-trade-no/scan-0001/close")
    assert closed.json()["status"] == "closed"
    assert Event.objects.filter(user=payer, type=events.ORDER_CLOSED).exists()
    assert code(pay(app, MerchantOrder.objects.get().code)) == "order_closed"


def test_used_expired_replaced_and_unknown_codes_are_refused(shop, payer, client_for):
    app = client_for(payer)
    used = new_code(app)
    assert shop.micropay(used, "scan-0001").status_code == 201
    again = shop.micropay(used, "scan-0002")
    assert again.status_code == 409 and code(again) == "payment_code_used"

    expired = new_code(app)
    PaymentCode.objects.filter(used_at__isnull=True).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = shop.micropay(expired, "scan-0003")
    assert response.status_code == 400 and code(response) == "payment_code_expired"

    replaced = new_code(app)
    new_code(app)  # showing a new code ends the previous one
    assert code(shop.micropay(replaced, "scan-0004")) == "payment_code_expired"

    assert code(shop.micropay("130000000000000000", "scan-0005")) == "payment_code_invalid"
    malformed = shop.micropay("12345", "scan-0006")
    assert malformed.status_code == 400 and "auth_code" in malformed.json()["error"]["fields"]
    assert MerchantOrder.objects.count() == 1 and wallet(payer) == 9_500


def test_a_failed_charge_stores_nothing_and_leaves_the_code_usable(shop, alice, client_for):
    with_pin(alice)
    fund(alice, 100)
    auth_code = new_code(client_for(alice))
    poor = shop.micropay(auth_code, amount=500)
    assert poor.status_code == 400 and code(poor) == "insufficient_funds"
    assert not MerchantOrder.objects.exists() and PaymentCode.objects.get().used_at is None
    assert shop.micropay(auth_code, "scan-0002", amount=100).json()["status"] == "paid"
    assert wallet(alice) == 0


def test_a_pin_locked_payer_cannot_be_charged_without_pin(shop, payer, client_for):
    auth_code = new_code(client_for(payer))
    from payments.models import WalletSettings

    WalletSettings.objects.filter(user=payer).update(pin_locked_until=timezone.now() + timedelta(hours=1))
    response = shop.micropay(auth_code)
    assert response.status_code == 403 and code(response) == "pin_locked"
    assert wallet(payer) == 10_000 and not MerchantOrder.objects.exists()


def test_a_payment_code_needs_a_pin(client_for, carol):
    response = client_for(carol).post("/api/v1/payments/payment-codes")
    assert response.status_code == 403 and code(response) == "pin_not_set"


def test_micropay_is_idempotent_on_out_trade_no(shop, payer, client_for):
    app = client_for(payer)
    first = shop.micropay(new_code(app))
    conflict = shop.micropay(new_code(app))  # same out_trade_no, another code
    assert conflict.status_code == 409 and code(conflict) == "out_trade_no_conflict"
    assert MerchantOrder.objects.count() == 1 and first.json()["status"] == "paid"
