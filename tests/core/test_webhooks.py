"""Outbound webhooks against a real HTTP server on 127.0.0.1 (tests/fakes/webhooks.py).

Tasks run eagerly in this process here; tests/core/test_webhooks_worker.py goes through Redis and
a real Celery worker.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.db import transaction
from django.test import Client
from django.utils import timezone

from accounts.models import User
from superapp.celery import app as celery_app
from superapp.core import outbound, tasks, webhooks
from superapp.core.errors import Conflict, NotFound, ValidationFailed
from superapp.core.models import AuditLogEntry, WebhookAttempt, WebhookDelivery
from superapp.core.webhooks import (
    WebhookSignatureInvalid,
    webhook_delivery_get,
    webhook_enqueue,
    webhook_retry_now,
    webhook_signature_header,
    webhook_signature_verify,
)
from tests.fakes.tls import make_tls
from tests.fakes.webhooks import WebhookReceiver
from tests.threads import run_together

SECRET = "whsec_test_0123456789abcdef"
PAYLOAD = {"payment_id": 42, "amount": 1999, "currency": "CNY", "memo": "咖啡"}


def enqueue(url: str, key: str = "payment:42:succeeded", **kwargs) -> WebhookDelivery:
    params = {
        "url": url,
        "event_type": "payment.succeeded",
        "payload": PAYLOAD,
        "secret": SECRET,
        "dedup_key": key,
    }
    params.update(kwargs)
    return webhook_enqueue(**params)


@pytest.fixture
def fast(settings):
    settings.WEBHOOK_TIMEOUT = 0.5
    # Longer than the claim's clock tolerance (0.5 s): the eager countdown tasks find the retry
    # not yet due, and the tests run each attempt when it is.
    settings.WEBHOOK_RETRY_SCHEDULE = [0.6]
    settings.WEBHOOK_MAX_AGE = 60


@pytest.fixture
def lost_tasks(settings):
    """Celery tasks go to a Redis queue that no worker consumes: as if lost with a worker."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    queue = f"lost-{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield lambda: client.llen(queue)
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved
    client.delete(queue)
    client.close()


def eager_again():
    celery_app.conf.task_always_eager = True


def deliver_until_done(delivery: WebhookDelivery, max_attempts: int = 10) -> list[str]:
    """Run the task for each due attempt (the countdown retries cannot wait in eager mode)."""
    results = []
    for _ in range(max_attempts):
        delivery.refresh_from_db()
        if delivery.status != WebhookDelivery.Status.PENDING:
            return results
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        if wait > 0:
            time.sleep(wait)
        results.append(tasks.webhook_deliver(delivery.id))
    raise AssertionError(f"not finished after {max_attempts} attempts: {results}")


def assert_signed(received, delivery: WebhookDelivery) -> None:
    assert received.body == delivery.body.encode()
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == "superapp-webhooks/1"
    assert received.headers["x-superapp-event-id"] == delivery.public_id
    assert received.headers["x-superapp-event-type"] == "payment.succeeded"
    webhook_signature_verify(
        body=received.body, header=received.headers["x-superapp-signature"], secret=SECRET
    )
    with pytest.raises(WebhookSignatureInvalid) as wrong:
        webhook_signature_verify(
            body=received.body, header=received.headers["x-superapp-signature"], secret="another-secret"
        )
    assert wrong.value.code == "webhook_signature_mismatch"


# --- delivery, retries, history -----------------------------------------------------------------


@pytest.mark.django_db
def test_delivered_once_after_a_500_a_timeout_and_a_dropped_connection(
    fast, django_capture_on_commit_callbacks
):
    with WebhookReceiver([500, "timeout", "close", 200], hang_seconds=2) as receiver:
        with django_capture_on_commit_callbacks(execute=True):
            delivery = enqueue(receiver.url)
        # The first attempt ran after commit (eagerly) and met the 500.
        assert receiver.answers == [500]
        results = deliver_until_done(delivery)
        assert results == ["retry", "retry", "delivered"]
        # Delivered: a task run again (acks_late redelivery, the sweeper) sends nothing.
        assert tasks.webhook_deliver(delivery.id) == "skipped"
        time.sleep(0.3)
        requests = receiver.requests

    assert [r.answer for r in requests] == [500, "timeout", "close", 200]
    for received in requests:
        assert_signed(received, delivery)
        assert received.path == "/hooks/superapp"
    assert len({r.body for r in requests}) == 1  # the same bytes on every attempt
    body = requests[0].json()
    assert body == {
        "id": delivery.public_id,
        "type": "payment.succeeded",
        "created": int(delivery.created_at.timestamp()),
        "data": PAYLOAD,
    }
    assert delivery.public_id.startswith("evt_")

    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.delivered_at is not None
    assert delivery.attempt_count == 4
    assert delivery.next_attempt_at is None and delivery.locked_until is None
    assert (delivery.last_status_code, delivery.last_error) == (200, "")
    attempts = list(delivery.attempts.order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert [a.status_code for a in attempts] == [500, None, None, 200]
    assert attempts[0].error == "HTTP 500" and "scripted failure" in attempts[0].response_excerpt
    assert attempts[1].error.startswith("timeout")
    assert attempts[1].duration_ms >= 450  # WEBHOOK_TIMEOUT 0.5 s
    assert attempts[2].error.startswith("protocol_error")
    assert attempts[3].error == "" and attempts[3].succeeded
    # Retries waited for the schedule (0.6 s).
    for earlier, later in itertools.pairwise(requests):
        assert later.at - earlier.at >= 0.58


@pytest.mark.django_db
def test_each_attempt_is_signed_with_its_own_timestamp(fast):
    with WebhookReceiver([500, 200]) as receiver:
        delivery = enqueue(receiver.url)
        deliver_until_done(delivery)
        first, second = receiver.requests
    t1 = int(first.headers["x-superapp-signature"].split(",")[0].removeprefix("t="))
    t2 = int(second.headers["x-superapp-signature"].split(",")[0].removeprefix("t="))
    assert abs(t1 - time.time()) < 30 and t2 >= t1
    assert first.body == second.body


def test_next_attempt_follows_the_schedule_then_gives_up_at_the_max_age(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [
        15,
        15,
        30,
        180,
        600,
        1200,
        1800,
        1800,
        1800,
        3600,
        10800,
        10800,
        10800,
        21600,
        21600,
    ]
    settings.WEBHOOK_MAX_AGE = 24 * 3600
    created = timezone.now()
    plan = webhooks._next_attempt_at
    assert plan(created_at=created, number=1, now=created) == created + timedelta(seconds=15)
    assert plan(created_at=created, number=4, now=created) == created + timedelta(minutes=3)
    assert plan(created_at=created, number=15, now=created) == created + timedelta(hours=6)
    assert plan(created_at=created, number=40, now=created) == created + timedelta(hours=6)  # last repeats
    late = created + timedelta(hours=20)
    assert plan(created_at=created, number=14, now=late) == created + timedelta(hours=24)  # one last, at 24 h
    assert plan(created_at=created, number=15, now=created + timedelta(hours=24)) is None


@pytest.mark.django_db
def test_a_receiver_that_never_succeeds_ends_failed_at_the_max_age(settings, caplog):
    settings.WEBHOOK_TIMEOUT = 0.5
    settings.WEBHOOK_RETRY_SCHEDULE = [0.6]
    settings.WEBHOOK_MAX_AGE = 2.0
    with WebhookReceiver(default=503) as receiver:
        delivery = enqueue(receiver.url)
        with caplog.at_level("WARNING", logger="superapp.webhooks"):
            results = deliver_until_done(delivery, max_attempts=20)
        count = len(receiver.requests)
    assert results[-1] == "failed" and set(results[:-1]) == {"retry"}
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert delivery.attempts.count() == delivery.attempt_count == count >= 3
    last = delivery.attempts.order_by("-number").first()
    # Given up by the first attempt that failed past the max age (one is made at that age).
    finished = last.started_at + timedelta(milliseconds=last.duration_ms + 5)
    assert finished >= delivery.created_at + timedelta(seconds=2.0)
    assert tasks.webhook_deliver(delivery.id) == "skipped"
    failed = [r for r in caplog.records if r.getMessage() == "webhooks.attempt" and r.outcome == "failed"]
    assert len(failed) == 1 and failed[0].levelname == "WARNING"
    assert SECRET not in caplog.text


@pytest.mark.django_db
def test_a_redirect_is_a_failure_and_is_not_followed(fast):
    with WebhookReceiver([307, 200]) as receiver:
        delivery = enqueue(receiver.url)
        assert tasks.webhook_deliver(delivery.id) == "retry"
        time.sleep(0.2)
        assert len(receiver.requests) == 1
    attempt = delivery.attempts.get()
    assert (attempt.status_code, attempt.error) == (307, "HTTP 307")


@pytest.mark.django_db
def test_connection_refused_and_dns_failure_are_recorded_attempts(fast):
    with WebhookReceiver() as receiver:
        url = receiver.url
    refused = enqueue(url, key="refused")  # the receiver is gone: nothing listens on the port
    assert tasks.webhook_deliver(refused.id) == "retry"
    assert refused.attempts.get().error.startswith("connect_error")
    unknown = enqueue("http://no-such-host.invalid/hook", key="dns")
    assert tasks.webhook_deliver(unknown.id) == "retry"
    attempt = unknown.attempts.get()
    assert attempt.status_code is None and attempt.error.startswith("dns_error")


@pytest.mark.django_db
def test_https_receiver_is_verified_against_its_certificate(fast, settings, tmp_path):
    tls = make_tls(tmp_path)
    with WebhookReceiver([200, 200], tls=tls) as receiver:
        # The system CAs do not know the test CA: the certificate is checked.
        untrusted = enqueue(receiver.url, key="untrusted")
        assert tasks.webhook_deliver(untrusted.id) == "retry"
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.attempts.get().error
        settings.WEBHOOK_CA_FILE = str(tls.ca_file)
        trusted = enqueue(receiver.url, key="trusted")
        # Connected to the checked address with the name kept for SNI, certificate and Host.
        assert tasks.webhook_deliver(trusted.id) == "delivered"
        (received,) = receiver.requests
    assert received.headers["host"] == f"localhost:{receiver.port}"
    assert_signed(received, trusted)


# --- transactions, dedup, concurrency -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_notifies_nobody(fast):
    with WebhookReceiver() as receiver:
        with pytest.raises(RuntimeError), transaction.atomic():
            enqueue(receiver.url, key="rolled-back")
            raise RuntimeError("the payment failed")
        time.sleep(0.3)
        assert receiver.requests == []
        assert not WebhookDelivery.objects.exists()
        # The same call committed is sent once, after commit.
        with transaction.atomic():
            delivery = enqueue(receiver.url, key="committed")
            assert receiver.requests == []
        receiver.wait_for(1)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_the_same_dedup_key_twice_is_one_row_and_one_delivery(fast):
    with WebhookReceiver() as receiver:
        with transaction.atomic():
            first = enqueue(receiver.url)
            second = enqueue(receiver.url, payload={"other": True})
        third = enqueue(receiver.url)  # a service run again, later
        time.sleep(0.3)
        requests = receiver.requests
    assert first.id == second.id == third.id
    assert WebhookDelivery.objects.count() == 1
    assert len(requests) == 1 and requests[0].json()["data"] == PAYLOAD
    assert webhook_delivery_get(dedup_key="payment:42:succeeded").status == "delivered"
    assert webhook_delivery_get(dedup_key="unknown") is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_enqueues_of_one_key_make_one_row(lost_tasks):
    barrier = threading.Barrier(2)  # passed inside each thread's transaction, so not run_together's

    def run():
        with transaction.atomic():
            barrier.wait()
            delivery = enqueue("http://127.0.0.1:9/hook", key="race")
            time.sleep(0.2)  # the other insert waits on the unique index meanwhile
            return delivery.id

    outcome = run_together([run, run], barrier=False)
    assert outcome.raised == []
    assert len(set(outcome.results)) == 1 and WebhookDelivery.objects.count() == 1
    assert lost_tasks() == 1  # one task sent


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliveries_of_one_due_attempt_send_one_post(settings, lost_tasks):
    settings.WEBHOOK_TIMEOUT = 5
    with WebhookReceiver(delay=0.5) as receiver:
        delivery = enqueue(receiver.url)  # its task is lost; two workers now race for the attempt
        outcome = run_together([lambda: tasks.webhook_deliver(delivery.id)] * 2)
        assert outcome.raised == []
        results = outcome.results
        time.sleep(0.3)
        requests = receiver.requests
    assert sorted(results) == ["delivered", "skipped"]
    assert len(requests) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


@pytest.mark.django_db
def test_an_attempt_in_flight_is_not_claimed_again_until_its_lease_ends(fast):
    delivery = enqueue("http://127.0.0.1:9/hook")
    now = timezone.now()
    WebhookDelivery.objects.filter(id=delivery.id).update(
        locked_until=now + timedelta(minutes=1), attempt_count=1
    )
    assert tasks.webhook_deliver(delivery.id) == "skipped"
    # The worker died: its lease ends, and the attempt can be made again.
    WebhookDelivery.objects.filter(id=delivery.id).update(locked_until=now - timedelta(seconds=1))
    assert tasks.webhook_deliver(delivery.id) == "retry"
    assert delivery.attempts.get().number == 2


# --- the sweeper --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_requeues_a_due_delivery_whose_task_was_lost(fast, lost_tasks):
    with WebhookReceiver() as receiver:
        lost = enqueue(receiver.url, key="lost")
        recent = enqueue(receiver.url, key="recent")
        later = enqueue(receiver.url, key="later")
        assert lost_tasks() == 3  # their tasks sit in a queue nobody reads
        now = timezone.now()
        # A worker crashed 5 minutes ago with the first one's task.
        WebhookDelivery.objects.filter(id=lost.id).update(task_due_at=now - timedelta(minutes=5))
        WebhookDelivery.objects.filter(id=later.id).update(next_attempt_at=now + timedelta(hours=1))
        eager_again()
        assert tasks.webhooks_sweep() == 1  # the recent task may still run; the later one is not due
        receiver.wait_for(1)
        WebhookDelivery.objects.filter(id=recent.id).update(task_due_at=None)  # a long wait: sweeper's job
        assert tasks.webhooks_sweep() == 1
        receiver.wait_for(2)
        assert tasks.webhooks_sweep() == 0
        requests = receiver.requests
    assert sorted(r.headers["x-superapp-event-id"] for r in requests) == sorted(
        [lost.public_id, recent.public_id]
    )
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered", "pending"}


@pytest.mark.django_db(transaction=True)
def test_long_waits_are_left_to_the_sweeper(settings, lost_tasks):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600]
    with WebhookReceiver([500]) as receiver:
        delivery = enqueue(receiver.url)
        assert lost_tasks() == 1
        assert tasks.webhook_deliver(delivery.id) == "retry"
    assert lost_tasks() == 1  # no countdown task for an hour's wait
    delivery.refresh_from_db()
    assert delivery.task_due_at is None
    assert 3590 < (delivery.next_attempt_at - timezone.now()).total_seconds() <= 3600


# --- safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.com/hook",
        "http:///hook",
        "http://example.com:0/hook",
        "http://example.com:99999/hook",
        "http://exa mple.com/hook",
        "http://exämple.com/hook",
        "",
        "https://example.com/" + "a" * 2048,
        "http://[::1",  # urlsplit: ValueError("Invalid IPv6 URL")
        "http://a]b.com/",
        "http://[zz]/hook",
    ],
)
@pytest.mark.django_db
def test_urls_that_are_not_http_are_refused(url):
    with pytest.raises(ValidationFailed) as error:
        enqueue(url)
    assert error.value.code == "webhook_url_invalid"
    assert "url" in error.value.fields
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "https://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
@pytest.mark.django_db
def test_private_hosts_are_refused_in_production(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    with pytest.raises(ValidationFailed) as error:
        enqueue(url)
    assert error.value.code == "webhook_url_private"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_public_hosts_are_accepted_in_production(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    delivery = enqueue("https://93.184.215.14/hook")  # a literal: no DNS needed
    assert delivery.status == "pending"
    # resolve=False (the URL was checked when saved): no DNS lookup in the caller's transaction;
    # a literal private address is still refused, and every attempt checks again.
    webhooks.webhook_url_check(url="https://merchant.example/hook", resolve=False)
    assert enqueue("https://merchant.example/hook", key="no-dns", resolve=False).status == "pending"
    with pytest.raises(ValidationFailed) as error:
        enqueue("http://10.0.0.8/hook", key="literal", resolve=False)
    assert error.value.code == "webhook_url_private"


def test_requests_are_aimed_at_the_checked_address_with_the_name_kept():
    targets, headers, extensions = outbound.pinned_targets(
        "https://user:pw@localhost:8443/notify?token=abc", allow_private=True
    )
    assert targets == ["https://user:pw@127.0.0.1:8443/notify?token=abc"]
    assert headers == {"Host": "localhost:8443"} and extensions == {"sni_hostname": "localhost"}
    targets, headers, extensions = outbound.pinned_targets("http://[::1]/n", allow_private=True)
    assert (targets, headers, extensions) == (["http://[::1]/n"], {"Host": "[::1]"}, {})
    with pytest.raises(outbound.HostRefused) as refused:
        outbound.pinned_targets("http://localhost/n", allow_private=False)
    assert refused.value.code == "private_address"
    assert outbound.redacted_url("https://user:pw@h.example:8443/n?token=abc") == "https://h.example:8443/n"


@pytest.mark.parametrize("url", ["http://[::1", "http://a]b.com/", "https://[::1/hook"])
@pytest.mark.parametrize("resolve", [True, False])
def test_unbalanced_brackets_are_an_invalid_url_not_a_crash(url, resolve):
    with pytest.raises(outbound.InvalidUrl):
        outbound.parse_http_url(url)
    with pytest.raises(ValidationFailed) as error:
        webhooks.webhook_url_check(url=url, resolve=resolve)
    assert error.value.code == "webhook_url_invalid" and "url" in error.value.fields
    with pytest.raises(outbound.InvalidUrl):
        outbound.pinned_targets(url, allow_private=True)
    assert outbound.redacted_url(url) == "(invalid URL)"


@pytest.mark.django_db
def test_private_hosts_are_refused_again_at_send_time(settings, fast):
    with WebhookReceiver() as receiver:
        # Accepted when enqueued (say the name resolved publicly then), private when sent.
        delivery = enqueue(receiver.url.replace("127.0.0.1", "localhost"))
        settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
        assert tasks.webhook_deliver(delivery.id) == "retry"
        time.sleep(0.2)
        assert receiver.requests == []
    attempt = delivery.attempts.get()
    assert attempt.status_code is None and attempt.error.startswith("private_address: localhost resolves to")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_type": ""}, "event_type"),
        ({"event_type": "x" * 101}, "event_type"),
        ({"secret": ""}, "secret"),
        ({"key": ""}, "dedup_key"),
        ({"payload": ["not", "a", "dict"]}, "payload"),
        ({"payload": {"when": object()}}, "payload"),
    ],
)
@pytest.mark.django_db
def test_bad_arguments_are_refused_clearly(kwargs, field):
    with pytest.raises(ValidationFailed) as error:
        enqueue("https://93.184.215.14/hook", **kwargs)
    assert field in error.value.fields
    assert not WebhookDelivery.objects.exists()


# --- signatures ---------------------------------------------------------------------------------


def test_signature_verification_rules():
    body = b'{"id":"evt_1","type":"x","created":1,"data":{}}'
    now = int(time.time())
    header = webhook_signature_header(body=body, secret=SECRET, timestamp=now)
    webhook_signature_verify(body=body, header=header, secret=SECRET)
    # Several v1 values (secret rotation): one match is enough.
    other = webhook_signature_header(body=body, secret="old", timestamp=now).split(",")[1]
    webhook_signature_verify(body=body, header=f"{header},{other}", secret=SECRET)

    def code_of(**kwargs):
        with pytest.raises(WebhookSignatureInvalid) as error:
            webhook_signature_verify(**{"body": body, "header": header, "secret": SECRET, **kwargs})
        return error.value.code

    assert code_of(body=body + b" ") == "webhook_signature_mismatch"
    assert code_of(secret="wrong") == "webhook_signature_mismatch"
    assert code_of(header="") == "webhook_signature_malformed"
    assert code_of(header="v1=abc") == "webhook_signature_malformed"
    assert code_of(header=f"t=abc,{header.split(',')[1]}") == "webhook_signature_malformed"
    assert code_of(header=f"t={now},v1=ünïcode") == "webhook_signature_mismatch"
    stale = webhook_signature_header(body=body, secret=SECRET, timestamp=now - 600)
    assert code_of(header=stale) == "webhook_signature_expired"
    webhook_signature_verify(body=body, header=stale, secret=SECRET, tolerance=0)


# --- staff: retry now, admin --------------------------------------------------------------------


@pytest.fixture
def staff():
    client = Client()
    client.force_login(User.objects.create_superuser("root", "pw-root-123", email="root@example.com"))
    return client


URL = "/admin/core/webhookdelivery/"


@pytest.mark.django_db
def test_retry_now_makes_a_failed_delivery_due_and_refuses_a_delivered_one(
    fast, django_capture_on_commit_callbacks
):
    with WebhookReceiver([200]) as receiver:
        delivery = enqueue(receiver.url)
        WebhookDelivery.objects.filter(id=delivery.id).update(status="failed", next_attempt_at=None)
        with django_capture_on_commit_callbacks(execute=True):
            webhook_retry_now(delivery_id=delivery.id)
        receiver.wait_for(1)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    with pytest.raises(Conflict):
        webhook_retry_now(delivery_id=delivery.id)
    with pytest.raises(NotFound):
        webhook_retry_now(delivery_id=delivery.id + 1000)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?status__exact=pending",
        "?event_type=payment.succeeded",
        "?q=payment:42:succeeded",
        "?q=127.0.0.1",
    ],
)
@pytest.mark.django_db
def test_delivery_admin_lists_without_secrets(staff, query):
    delivery = enqueue("https://93.184.215.14/hook?token=abc")
    response = staff.get(URL + query)
    assert response.status_code == 200
    page = response.content.decode()
    if "127.0.0.1" not in query:
        assert delivery.public_id in page
    assert SECRET not in page and "token=abc" not in page


@pytest.mark.django_db
def test_delivery_admin_page_is_read_only_with_its_attempts(staff, fast):
    with WebhookReceiver([500]) as receiver:
        delivery = enqueue(receiver.url)
        tasks.webhook_deliver(delivery.id)
    response = staff.get(f"{URL}{delivery.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "HTTP 500" in page and "payment.succeeded" in page
    assert SECRET not in page
    assert 'name="_save"' not in page
    assert staff.get(URL + "add/").status_code == 403
    assert staff.post(f"{URL}{delivery.id}/delete/", {"post": "yes"}).status_code == 403
    assert WebhookDelivery.objects.filter(id=delivery.id).exists()


@pytest.mark.django_db
def test_admin_retry_now_action(staff, fast, django_capture_on_commit_callbacks):
    with WebhookReceiver([200]) as receiver:
        failed = enqueue(receiver.url, key="failed")
        WebhookDelivery.objects.filter(id=failed.id).update(status="failed", next_attempt_at=None)
        with django_capture_on_commit_callbacks(execute=True):
            response = staff.post(URL, {"action": "retry_now", "_selected_action": [failed.id]}, follow=True)
        receiver.wait_for(1)
    assert response.status_code == 200
    assert "1 webhook queued." in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == "delivered"
    (entry,) = AuditLogEntry.objects.all()  # staff actions are audited
    assert (entry.action, entry.actor_username, entry.target_object_id) == (
        "webhooks.retry_now",
        "root",
        str(failed.id),
    )
    response = staff.post(URL, {"action": "retry_now", "_selected_action": [failed.id]}, follow=True)
    assert "1 webhook skipped (already delivered)." in response.content.decode()


@pytest.mark.django_db
def test_non_staff_are_kept_out_of_the_delivery_admin(alice):
    client = Client()
    client.force_login(alice)
    assert client.get(URL).status_code == 302


@pytest.mark.django_db
def test_finished_deliveries_are_purged_after_the_retention_pending_ones_never(fast, settings):
    with WebhookReceiver([200]) as receiver:
        delivered = enqueue(receiver.url, key="old-delivered")
        deliver_until_done(delivered)
    failed = enqueue("http://127.0.0.1:9/", key="old-failed")
    WebhookDelivery.objects.filter(pk=failed.pk).update(status=WebhookDelivery.Status.FAILED)
    pending = enqueue("http://127.0.0.1:9/", key="old-pending")
    recent = enqueue("http://127.0.0.1:9/", key="recent-failed")
    WebhookDelivery.objects.filter(pk=recent.pk).update(status=WebhookDelivery.Status.FAILED)
    old = timezone.now() - timedelta(days=settings.WEBHOOK_RETENTION_DAYS + 1)
    WebhookDelivery.objects.filter(pk__in=[delivered.pk, failed.pk, pending.pk]).update(created_at=old)
    assert WebhookAttempt.objects.filter(delivery=delivered).exists()
    assert tasks.purge_old_webhooks() == 2
    assert set(WebhookDelivery.objects.values_list("dedup_key", flat=True)) == {
        "old-pending",
        "recent-failed",
    }
    assert not WebhookAttempt.objects.filter(delivery_id=delivered.pk).exists()
