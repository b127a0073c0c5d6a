"""The APNs backend, through httpx over HTTP/2 and TLS, against a fake APNs on 127.0.0.1."""

from __future__ import annotations

import logging
import time

import pytest

from superapp.core import push
from superapp.core.push import backends
from superapp.core.push.models import PushDevice
from superapp.core.push.tasks import push_deliver
from tests.fakes import fixtures

fake_apns = fixtures.fake_apns

pytestmark = pytest.mark.django_db

IOS_TOKEN = "ab" * 32
IOS_TOKEN_2 = "cd" * 32


def note(**kwargs) -> push.Notification:
    defaults = dict(
        title="Alice", body="hello there", data={"conversation_id": "12"}, collapse_key="conv-12", badge=3
    )
    return push.Notification(**{**defaults, **kwargs})


def deliver(user_ids, notification, **kwargs) -> push.DeliverySummary:
    from django.test.testcases import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return push.notify_users(user_ids=user_ids, notification=notification, **kwargs)


@pytest.fixture
def iphone(alice):
    return PushDevice.objects.create(user=alice, platform="ios", token=IOS_TOKEN)


@pytest.fixture
def retries(monkeypatch):
    scheduled: list[dict] = []
    monkeypatch.setattr(
        push_deliver,
        "apply_async",
        lambda kwargs, countdown: scheduled.append({**kwargs, "countdown": countdown}),
    )
    return scheduled


def test_sends_over_http2_with_a_provider_token(fake_apns, iphone, alice):
    before = int(time.time())
    summary = deliver([alice.id], note())

    assert fake_apns.errors == []
    assert summary.sent == 1
    [request] = fake_apns.sent_to(IOS_TOKEN)
    headers = request["headers"]
    assert headers["apns-topic"] == "com.example.superapp"
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "conv-12"
    assert before + 24 * 3600 <= int(headers["apns-expiration"]) <= time.time() + 24 * 3600
    assert request["payload"] == {
        "aps": {
            "alert": {"title": "Alice", "body": "hello there"},
            "badge": 3,
            "sound": "default",
            "thread-id": "conv-12",
        },
        "conversation_id": "12",
    }


def test_normal_priority_silent_expire_now(fake_apns, iphone, alice):
    deliver([alice.id], push.Notification(title="New message", priority="normal", sound=None, ttl=0))
    [request] = fake_apns.requests
    assert request["headers"]["apns-priority"] == "5"
    assert request["headers"]["apns-expiration"] == "0"
    assert "apns-collapse-id" not in request["headers"]
    assert request["payload"] == {"aps": {"alert": {"title": "New message"}}}


def test_one_connection_and_one_provider_token_for_many_sends(fake_apns, iphone, alice, bob):
    PushDevice.objects.create(user=bob, platform="ios", token=IOS_TOKEN_2)
    for _ in range(3):
        assert deliver([alice.id, bob.id], note()).sent == 2
    assert len(fake_apns.requests) == 6
    assert len(fake_apns.provider_tokens) == 1
    assert len(fake_apns.connections) == 1


def test_the_provider_token_is_renewed_after_50_minutes(fake_apns, iphone, alice):
    deliver([alice.id], note())
    backend = backends.backend_for("ios")
    backend._issued_at -= 49 * 60
    deliver([alice.id], note())
    assert len(fake_apns.provider_tokens) == 1
    backend._issued_at -= 2 * 60
    time.sleep(1)  # a new iat
    deliver([alice.id], note())
    assert len(fake_apns.provider_tokens) == 2
    assert fake_apns.errors == []


def test_an_expired_provider_token_is_renewed_once(fake_apns, iphone, alice):
    deliver([alice.id], note())
    fake_apns.expire_provider_tokens()
    time.sleep(1)  # a new iat
    summary = deliver([alice.id], note())
    assert summary.sent == 1
    assert len(fake_apns.provider_tokens) == 2


def test_the_device_bundle_id_is_the_topic(fake_apns, alice):
    PushDevice.objects.create(user=alice, platform="ios", token=IOS_TOKEN, app_id="com.other.app")
    summary = deliver([alice.id], note())
    assert [(r.status, r.reason) for r in summary.results] == [("failed", "TopicDisallowed")]
    assert fake_apns.errors == ["TopicDisallowed"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("unregistered", "unregistered"),
        ("bad_device_token", "bad_device_token"),
        ("not_for_topic", "token_not_for_topic"),
    ],
)
def test_a_dead_token_disables_the_device(fake_apns, iphone, alice, retries, answer, reason):
    fake_apns.answer(IOS_TOKEN, answer)
    summary = deliver([alice.id], note())
    assert [(r.status, r.reason) for r in summary.results] == [("disabled", reason)]
    iphone.refresh_from_db()
    assert iphone.disabled_at is not None and iphone.disabled_reason == reason
    assert retries == []


def test_a_device_registered_again_meanwhile_stays_enabled(fake_apns, iphone, alice, monkeypatch):
    """A 410 for a send that started before the app registered the token again disables nothing."""
    from superapp.core.push import services

    fake_apns.answer(IOS_TOKEN, "unregistered")
    real_send = services._send

    def send_then_register(devices, notification):
        results = real_send(devices, notification)
        services.device_register(user=alice, platform="ios", token=IOS_TOKEN)
        return results

    monkeypatch.setattr(services, "_send", send_then_register)
    assert deliver([alice.id], note()).results[0].status == "disabled"
    iphone.refresh_from_db()
    assert iphone.disabled_at is None


@pytest.mark.parametrize(
    ("answer", "retry_after"), [("too_many", "5"), ("internal", None), ("unavailable", None)]
)
def test_429_and_5xx_are_retried(fake_apns, iphone, alice, retries, answer, retry_after):
    fake_apns.answer(IOS_TOKEN, answer, retry_after=retry_after)
    summary = deliver([alice.id], note())
    assert summary.results[0].status == "retry"
    assert retries[0]["device_ids"] == [iphone.id] and retries[0]["attempt"] == 2
    if retry_after:
        assert retries[0]["countdown"] == 5.0
    retry = {k: v for k, v in retries[0].items() if k != "countdown"}
    assert push_deliver.apply(kwargs=retry).get()["sent"] == 1
    iphone.refresh_from_db()
    assert iphone.disabled_at is None


def test_the_server_certificate_is_verified(fake_apns, iphone, alice, retries, settings):
    settings.APNS_CA_FILE = ""  # the system's CAs do not know the fake's
    summary = deliver([alice.id], note())
    assert [(r.status, r.reason) for r in summary.results] == [("retry", "ConnectError")]
    assert fake_apns.requests == []


def test_no_token_in_the_logs(fake_apns, iphone, alice, retries, caplog):
    caplog.set_level(logging.DEBUG)
    fake_apns.answer(IOS_TOKEN, "too_many", "unregistered")
    deliver([alice.id], note())
    deliver([alice.id], note())
    assert len(fake_apns.requests) == 2
    text = caplog.text
    assert "no longer valid" in text and "will retry" in text
    assert IOS_TOKEN not in text and IOS_TOKEN[:16] not in text
    assert fake_apns.provider_tokens[0] not in text
