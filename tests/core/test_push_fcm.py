"""The FCM HTTP v1 backend, through its real HTTP client, against a fake Google on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest

from superapp.core import push
from superapp.core.push import backends
from superapp.core.push.models import PushDevice
from superapp.core.push.tasks import push_deliver
from tests.fakes import fixtures

fake_fcm = fixtures.fake_fcm

pytestmark = pytest.mark.django_db

ANDROID_TOKEN = "dA1b2C3d4E5f6:APA91bH" + "x" * 140
ANDROID_TOKEN_2 = "fZ9y8X7w6V5u4:APA91bK" + "z" * 140
WEB_TOKEN = "eW1b2C3d4E5f6:APA91bW" + "y" * 140


def note(**kwargs) -> push.Notification:
    defaults = dict(
        title="Alice", body="hello there", data={"conversation_id": "12"}, collapse_key="conv-12", badge=3
    )
    return push.Notification(**{**defaults, **kwargs})


@pytest.fixture
def android(alice):
    return PushDevice.objects.create(
        user=alice, platform="android", token=ANDROID_TOKEN, app_id="com.example.superapp"
    )


@pytest.fixture
def retries(monkeypatch, django_capture_on_commit_callbacks):
    """Capture the retries notify_users schedules (instead of running them)."""
    scheduled: list[dict] = []
    monkeypatch.setattr(
        push_deliver,
        "apply_async",
        lambda kwargs, countdown: scheduled.append({**kwargs, "countdown": countdown}),
    )
    return scheduled


def deliver(user_ids, notification, **kwargs) -> push.DeliverySummary:
    """notify_users as a task would call it (outside a transaction: run on_commit callbacks)."""
    from django.test.testcases import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return push.notify_users(user_ids=user_ids, notification=notification, **kwargs)


def test_sends_a_v1_message_with_an_oauth_access_token(fake_fcm, android, alice):
    web = PushDevice.objects.create(user=alice, platform="web", token=WEB_TOKEN)

    summary = deliver([alice.id], note())

    assert fake_fcm.errors == []
    assert summary.sent == 2 and summary.as_dict()["devices"] == 2
    assert {r.device_id for r in summary.results} == {android.id, web.id}
    assert len(fake_fcm.oauth_exchanges) == 1
    claims = fake_fcm.oauth_exchanges[0]["claims"]
    assert claims["iss"] == fake_fcm.client_email and claims["aud"] == fake_fcm.token_uri
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    message = fake_fcm.sent_to(ANDROID_TOKEN)[0]["message"]
    assert message["notification"] == {"title": "Alice", "body": "hello there"}
    assert message["data"] == {"conversation_id": "12"}
    assert message["android"]["collapse_key"] == "conv-12"
    assert message["android"]["priority"] == "HIGH"
    assert message["android"]["notification"]["notification_count"] == 3
    assert message["apns"]["headers"]["apns-collapse-id"] == "conv-12"
    assert message["apns"]["payload"]["aps"]["badge"] == 3
    assert "webpush" not in message
    web_message = fake_fcm.sent_to(WEB_TOKEN)[0]["message"]
    assert web_message["webpush"]["headers"]["Urgency"] == "high"


def test_normal_priority_and_no_body(fake_fcm, android, alice):
    deliver([alice.id], push.Notification(title="New message", priority="normal", ttl=60))
    message = fake_fcm.sent_to(ANDROID_TOKEN)[0]["message"]
    assert message["notification"] == {"title": "New message"}
    assert message["android"]["priority"] == "NORMAL" and message["android"]["ttl"] == "60s"
    assert fake_fcm.errors == []


def test_one_token_exchange_for_many_sends_until_it_expires(fake_fcm, android, alice, bob):
    PushDevice.objects.create(user=bob, platform="android", token=ANDROID_TOKEN_2)
    for _ in range(3):
        assert deliver([alice.id, bob.id], note()).sent == 2
    assert len(fake_fcm.sends) == 6
    assert len(fake_fcm.oauth_exchanges) == 1
    assert len({s["bearer"] for s in fake_fcm.sends}) == 1

    # Within a minute of expiry the backend exchanges again, before sending.
    backend = backends.backend_for("android")
    backend._expires_at -= 3600 - 30
    assert deliver([alice.id], note()).sent == 1
    assert len(fake_fcm.oauth_exchanges) == 2
    assert fake_fcm.errors == []


def test_a_refused_access_token_is_renewed_once(fake_fcm, android, alice):
    deliver([alice.id], note())
    fake_fcm.revoke_access_tokens()
    summary = deliver([alice.id], note())
    assert summary.sent == 1
    assert len(fake_fcm.oauth_exchanges) == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("unregistered", "unregistered"),
        ("invalid_token", "invalid_token"),
        ("sender_id_mismatch", "sender_id_mismatch"),
    ],
)
def test_a_dead_token_disables_the_device(fake_fcm, android, alice, retries, answer, reason):
    fake_fcm.answer(ANDROID_TOKEN, answer)
    summary = deliver([alice.id], note())
    assert [(r.status, r.reason) for r in summary.results] == [("disabled", reason)]
    android.refresh_from_db()
    assert android.disabled_at is not None and android.disabled_reason == reason
    assert retries == []
    # Disabled devices get nothing more.
    assert deliver([alice.id], note()).results == []
    assert len(fake_fcm.sends) == 1


def test_a_payload_error_fails_without_disabling_the_device(fake_fcm, android, alice, retries, caplog):
    fake_fcm.answer(ANDROID_TOKEN, "invalid_payload")
    summary = deliver([alice.id], note())
    assert [(r.status, r.reason) for r in summary.results] == [("failed", "invalid_argument")]
    android.refresh_from_db()
    assert android.disabled_at is None
    assert retries == []


def test_429_is_retried_after_retry_after(fake_fcm, android, alice, bob, retries):
    ok = PushDevice.objects.create(user=bob, platform="android", token=ANDROID_TOKEN_2)
    fake_fcm.answer(ANDROID_TOKEN, "quota", retry_after="7")

    summary = deliver([alice.id, bob.id], note())

    assert {r.device_id: r.status for r in summary.results} == {android.id: "retry", ok.id: "sent"}
    assert summary.retry_scheduled_in == 7
    assert retries == [
        {
            "user_ids": [alice.id],
            "notification": note().to_dict(),
            "device_ids": [android.id],
            "attempt": 2,
            "countdown": 7.0,
        }
    ]
    # The retry (the task with the captured arguments) sends to the failed device only.
    retry = dict(retries[0])
    retry.pop("countdown")
    result = push_deliver.apply(kwargs=retry).get()
    assert result["sent"] == 1 and result["attempt"] == 2
    assert len(fake_fcm.sent_to(ANDROID_TOKEN)) == 2
    assert len(fake_fcm.sent_to(ANDROID_TOKEN_2)) == 1


@pytest.mark.parametrize("answer", ["internal", "unavailable"])
def test_5xx_is_retried_with_exponential_backoff(fake_fcm, android, alice, retries, settings, answer):
    settings.PUSH_RETRY_BACKOFF = 10
    fake_fcm.answer(ANDROID_TOKEN, answer)
    summary = deliver([alice.id], note())
    assert summary.results[0].status == "retry"
    assert 8 <= retries[0]["countdown"] <= 12
    fake_fcm.answer(ANDROID_TOKEN, answer)
    deliver([alice.id], note(), device_ids=[android.id], attempt=3)
    assert 32 <= retries[1]["countdown"] <= 48 and retries[1]["attempt"] == 4


def test_retries_stop_after_the_last_attempt(fake_fcm, android, alice, retries, settings):
    settings.PUSH_MAX_ATTEMPTS = 3
    fake_fcm.answer(ANDROID_TOKEN, "unavailable")
    summary = deliver([alice.id], note(), device_ids=[android.id], attempt=3)
    assert summary.results[0].status == "retry" and summary.retry_scheduled_in is None
    assert retries == []


def test_a_refused_service_account_fails_and_a_down_token_endpoint_retries(fake_fcm, android, alice, retries):
    fake_fcm.answer_oauth(
        (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, {})
    )
    summary = deliver([alice.id], note())
    assert [(r.status, r.reason) for r in summary.results] == [("failed", "oauth_invalid_grant")]
    assert retries == []

    fake_fcm.answer_oauth((503, {"error": "unavailable"}, {"retry-after": "3"}))
    summary = deliver([alice.id], note())
    assert [(r.status, r.retry_after) for r in summary.results] == [("retry", 3.0)]
    assert retries[0]["countdown"] == 3.0
    assert fake_fcm.sends == []


def test_a_missing_service_account_fails_loudly_without_breaking_other_platforms(settings, alice, caplog):
    settings.PUSH_BACKENDS = {"android": "fcm", "ios": "console", "web": "none"}
    settings.FCM_SERVICE_ACCOUNT_FILE = "/nonexistent/key.json"
    PushDevice.objects.create(user=alice, platform="android", token=ANDROID_TOKEN)
    PushDevice.objects.create(user=alice, platform="ios", token="ab" * 32)
    PushDevice.objects.create(user=alice, platform="web", token=WEB_TOKEN)
    summary = deliver([alice.id], note())
    assert sorted((r.platform, r.status, r.reason) for r in summary.results) == [
        ("android", "failed", "backend_unavailable"),
        ("ios", "sent", ""),
        ("web", "skipped", "no_backend"),
    ]
    assert "FCM_SERVICE_ACCOUNT_FILE" in caplog.text


def test_no_token_in_the_logs(fake_fcm, android, alice, retries, caplog):
    caplog.set_level(logging.DEBUG)
    fake_fcm.answer(ANDROID_TOKEN, "quota", "unregistered", retry_after="1")
    deliver([alice.id], note())
    deliver([alice.id], note())
    fake_fcm.revoke_access_tokens()
    deliver([alice.id], note())
    assert len(fake_fcm.sends) == 2
    text = caplog.text
    assert "no longer valid" in text and "will retry" in text
    assert ANDROID_TOKEN not in text and ANDROID_TOKEN[:20] not in text
    for bearer in {s["bearer"] for s in fake_fcm.sends}:
        assert bearer not in text
