"""Merchant notifications: a paid or refunded order is POSTed, signed, to the merchant's URL by a
real Celery worker, retried until a real HTTP server on 127.0.0.1 answers 2xx."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest

from payments import events
from payments.models import MerchantOrder
from superapp.celery import app as celery_app
from superapp.core.models import WebhookDelivery
from superapp.core.webhooks import WebhookSignatureInvalid, webhook_signature_verify
from tests.fakes.webhooks import WebhookReceiver
from tests.processes import celery_worker

from .merchant_client import funded_payer, open_merchant, pay

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_HOSTS": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0.5,0.5",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_MAX_AGE": "30",
}


@pytest.fixture
def real_queue():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved


def wait_delivered(dedup_key: str, timeout: float = 60) -> WebhookDelivery:
    deadline = time.time() + timeout
    while time.time() < deadline:
        delivery = WebhookDelivery.objects.filter(dedup_key=dedup_key).first()
        if delivery is not None and delivery.status == "delivered":
            return delivery
        time.sleep(0.2)
    raise AssertionError(f"{dedup_key} not delivered after {timeout}s")


def test_paid_and_refunded_orders_notify_the_merchant_through_failures(real_queue, alice, bob, client_for):
    with WebhookReceiver([500, "close", 200, 503, 200]) as receiver, celery_worker(**WORKER_ENV) as queue:
        celery_app.conf.task_default_queue = queue
        shop = open_merchant(bob, notify_url=f"{receiver.url}/pay/notify")
        funded_payer(alice)
        order_id = shop.create_order(amount=2_500, attach="table 7").json()["id"]
        assert pay(client_for(alice), MerchantOrder.objects.get(pk=order_id).code).status_code == 200
        paid = wait_delivered(f"payments.order:{order_id}:paid")
        assert shop.refund("refund-0001", 1_000).status_code == 201
        refunded = wait_delivered(f"payments.refund:{MerchantOrder.objects.get().refunds.get().id}:succeeded")
        time.sleep(1)  # nothing more arrives once both are delivered
        requests = receiver.requests

    assert [r.answer for r in requests] == [500, "close", 200, 503, 200]
    assert {r.path for r in requests} == {urlsplit(f"{receiver.url}/pay/notify").path}
    secret = shop.merchant.notify_secret
    for received in requests:
        # What the merchant does with each notification: verify the signature on the raw body.
        webhook_signature_verify(
            body=received.body, header=received.headers["x-superapp-signature"], secret=secret
        )
        with pytest.raises(WebhookSignatureInvalid):
            webhook_signature_verify(
                body=received.body, header=received.headers["x-superapp-signature"], secret="whsec_other"
            )
    first, second = requests[2].json(), requests[4].json()
    assert first["type"] == "order.paid" and first["id"] == paid.public_id
    order = MerchantOrder.objects.select_related("merchant").get()
    assert first["data"]["out_trade_no"] == "order-0001" and first["data"]["status"] == "paid"
    assert first["data"]["attach"] == "table 7" and first["data"]["amount"] == 2_500
    assert first["data"]["payer"] == events.payer_ref(merchant_id=order.merchant_id, user_id=alice.pk)
    assert second["type"] == "refund.succeeded" and second["id"] == refunded.public_id
    assert second["data"]["amount"] == 1_000 and second["data"]["out_refund_no"] == "refund-0001"
    assert second["data"]["order"]["refunded_amount"] == 1_000
    # Every attempt carried the same bytes.
    assert {r.body for r in requests[:3]} == {paid.body.encode()}
    assert json.loads(paid.body)["data"]["id"] == order_id


def test_an_order_override_url_and_no_url(
    alice, bob, client_for, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    shop = open_merchant(bob)  # no notification URL: nothing is queued
    funded_payer(alice)
    first = shop.create_order().json()["id"]
    pay(client_for(alice), MerchantOrder.objects.get(pk=first).code, key="1")
    assert not WebhookDelivery.objects.exists()
    with WebhookReceiver() as receiver:
        second = shop.create_order("order-0002", notify_url=f"{receiver.url}/only-this").json()["id"]
        with django_capture_on_commit_callbacks(execute=True):
            pay(client_for(alice), MerchantOrder.objects.get(pk=second).code, key="2")
        delivery = wait_delivered(f"payments.order:{second}:paid", timeout=20)
        assert [r.path for r in receiver.requests] == [urlsplit(f"{receiver.url}/only-this").path]
    assert delivery.url.endswith("/only-this")
