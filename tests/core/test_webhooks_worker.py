"""Outbound webhooks through Redis and a real Celery worker, to a real receiver on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction

from superapp.celery import app as celery_app
from superapp.core.models import WebhookDelivery
from superapp.core.webhooks import webhook_enqueue, webhook_signature_verify
from tests.fakes.webhooks import WebhookReceiver
from tests.processes import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_worker_test"
# The worker runs production settings: receivers on 127.0.0.1 must be allowed explicitly.
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_HOSTS": "true",
    "WEBHOOK_RETRY_SCHEDULE": "0.7,1",
    "WEBHOOK_TIMEOUT": "1",
    "WEBHOOK_MAX_AGE": "4",
}


@pytest.fixture
def real_queue():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved


def wait_until_ready(timeout: float = 60) -> None:
    """The max age is short here: start the clock only once the worker answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if celery_app.control.ping(timeout=0.5):
            return
    raise AssertionError("the worker did not start")


def wait_for_status(delivery: WebhookDelivery, status: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        delivery.refresh_from_db()
        if delivery.status == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"delivery still {delivery.status} after {timeout}s")


def enqueue(url: str, key: str) -> WebhookDelivery:
    return webhook_enqueue(
        url=url,
        event_type="merchant.payment.succeeded",
        payload={"order": "A-1001", "amount": 2500, "currency": "CNY"},
        secret=SECRET,
        dedup_key=key,
    )


def test_a_worker_delivers_after_commit_through_failures(real_queue):
    with WebhookReceiver([500, "close", 200]) as receiver, celery_worker(**WORKER_ENV) as queue:
        celery_app.conf.task_default_queue = queue
        wait_until_ready()
        with transaction.atomic():
            delivery = enqueue(receiver.url, "order:A-1001:paid")
            time.sleep(0.5)
            assert receiver.requests == []  # nothing before commit
        wait_for_status(delivery, "delivered")
        time.sleep(1.5)  # nothing more arrives once delivered
        requests = receiver.requests

    assert [r.answer for r in requests] == [500, "close", 200]
    assert {r.body for r in requests} == {delivery.body.encode()}
    for received in requests:
        webhook_signature_verify(
            body=received.body, header=received.headers["x-superapp-signature"], secret=SECRET
        )
        assert received.headers["x-superapp-event-id"] == delivery.public_id
    assert requests[1].at - requests[0].at >= 0.65  # the schedule: 0.7 s, then 1 s
    assert requests[2].at - requests[1].at >= 0.95
    attempts = list(delivery.attempts.order_by("number"))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, None), (3, 200)]
    assert delivery.attempt_count == 3 and delivery.locked_until is None


def test_a_receiver_that_never_succeeds_ends_failed_after_the_max_age(real_queue):
    with WebhookReceiver(default=503) as receiver, celery_worker(**WORKER_ENV) as queue:
        celery_app.conf.task_default_queue = queue
        wait_until_ready()
        delivery = enqueue(receiver.url, "order:A-1002:paid")
        wait_for_status(delivery, "failed")
        time.sleep(1.5)
        requests = receiver.requests

    assert len(requests) >= 4 and {r.answer for r in requests} == {503}
    assert {r.body for r in requests} == {delivery.body.encode()}
    attempts = list(delivery.attempts.order_by("number"))
    assert len(attempts) == len(requests) == delivery.attempt_count
    last = attempts[-1]
    assert last.started_at + timedelta(milliseconds=last.duration_ms + 5) >= delivery.created_at + timedelta(
        seconds=4
    )
    assert delivery.next_attempt_at is None and delivery.last_error == "HTTP 503"
