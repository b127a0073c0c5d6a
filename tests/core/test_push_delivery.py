"""notify_users / notify_users_later, the Notification value, the console backend, the task."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction

from superapp.core import push
from superapp.core.push import services
from superapp.core.push.backends import parse_config
from superapp.core.push.backends.base import PushBackend, parse_retry_after
from superapp.core.push.models import PushDevice
from superapp.core.push.tasks import push_deliver

pytestmark = pytest.mark.django_db

FCM_TOKEN = "dA1b2C3d4E5f6:APA91bH" + "x" * 140
IOS_TOKEN = "ab" * 32


class ExplodingBackend(PushBackend):
    name = "exploding"

    def send_one(self, device, notification):
        raise RuntimeError("bug")


# --- Notification ------------------------------------------------------------------------------


def test_notification_round_trips_as_a_dict():
    n = push.Notification(
        title="Alice", body="hi", data={"conversation_id": "12"}, collapse_key="conv-12", badge=3
    )
    assert push.Notification.from_dict(n.to_dict()) == n
    assert n.to_dict() == {
        "title": "Alice",
        "body": "hi",
        "data": {"conversation_id": "12"},
        "collapse_key": "conv-12",
        "badge": 3,
        "sound": "default",
        "priority": "high",
        "ttl": None,
    }


def test_notification_truncates_long_text():
    n = push.Notification(title="t" * 500, body="b" * 5000)
    assert len(n.title) == 100 and n.title.endswith("…")
    assert len(n.body) == 1000


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"title": "", "body": ""}, ValueError),
        ({"title": "t", "data": {"conversation_id": 12}}, TypeError),
        ({"title": "t", "data": {"from": "x"}}, ValueError),
        ({"title": "t", "data": {"google.x": "x"}}, ValueError),
        ({"title": "t", "data": {"aps": "x"}}, ValueError),
        ({"title": "t", "data": {"k": "v" * 3000}}, ValueError),
        ({"title": "t", "collapse_key": "c" * 65}, ValueError),
        ({"title": "t", "badge": -1}, ValueError),
        ({"title": "t", "badge": True}, ValueError),
        ({"title": "t", "priority": "urgent"}, ValueError),
        ({"title": "t", "ttl": 29 * 24 * 3600}, ValueError),
    ],
)
def test_notification_refuses_what_the_push_services_would(kwargs, error):
    with pytest.raises(error):
        push.Notification(**kwargs)


# --- configuration -------------------------------------------------------------------------------


def test_push_backends_setting_shapes():
    console = "superapp.core.push.backends.console.ConsoleBackend"
    assert parse_config("console") == {"android": console, "ios": console, "web": console}
    assert parse_config("android=fcm, ios=apns") == {
        "android": "superapp.core.push.backends.fcm.FcmV1Backend",
        "ios": "superapp.core.push.backends.apns.ApnsBackend",
        "web": "none",
    }
    assert parse_config({"web": "tests.x.Y"})["web"] == "tests.x.Y"


def test_retry_after_and_backoff(settings):
    settings.PUSH_RETRY_BACKOFF = 10
    settings.PUSH_RETRY_BACKOFF_MAX = 100
    assert parse_retry_after("7") == 7.0
    assert 50 < parse_retry_after("Wed, 21 Oct 2099 07:28:00 GMT") and parse_retry_after("soon") is None
    assert services.retry_delay(attempt=1, retry_after=[None, 30.0, 5.0]) == 30.0
    assert services.retry_delay(attempt=1, retry_after=[1000.0]) == 100.0
    assert 8 <= services.retry_delay(attempt=1) <= 12
    assert 16 <= services.retry_delay(attempt=2) <= 24
    assert 80 <= services.retry_delay(attempt=9) <= 120


# --- delivery ----------------------------------------------------------------------------------


def test_console_backend_logs_one_line_per_device_without_token_or_text(alice, bob, caplog):
    caplog.set_level(logging.INFO, logger="superapp.push")
    PushDevice.objects.create(user=alice, platform="android", token=FCM_TOKEN)
    PushDevice.objects.create(user=alice, platform="ios", token=IOS_TOKEN)
    PushDevice.objects.create(user=bob, platform="ios", token="cd" * 32, disabled_at="2026-01-01T00:00Z")
    summary = push.notify_users(
        user_ids=[alice.id, bob.id],
        notification=push.Notification(title="Bob", body="the secret plan", data={"conversation_id": "12"}),
    )
    assert summary.as_dict()["devices"] == 2 and summary.sent == 2
    assert {r.backend for r in summary.results} == {"console"}
    lines = [r.getMessage() for r in caplog.records if r.name == "superapp.push"]
    assert len(lines) == 2
    assert all("title='Bob'" in line and "body_chars=15" in line for line in lines)
    assert "the secret plan" not in caplog.text
    assert FCM_TOKEN not in caplog.text and IOS_TOKEN not in caplog.text


def test_a_user_without_devices_gets_nothing(alice):
    summary = push.notify_users(user_ids=[alice.id], notification=push.Notification(title="x"))
    assert summary.results == [] and summary.as_dict()["devices"] == 0


def test_a_failing_backend_does_not_stop_the_others(alice, settings, caplog):
    settings.PUSH_BACKENDS = {"android": "tests.core.test_push_delivery.ExplodingBackend", "ios": "console"}
    PushDevice.objects.create(user=alice, platform="android", token=FCM_TOKEN)
    PushDevice.objects.create(user=alice, platform="ios", token=IOS_TOKEN)
    summary = push.notify_users(user_ids=[alice.id], notification=push.Notification(title="x"))
    assert sorted((r.platform, r.status, r.reason) for r in summary.results) == [
        ("android", "failed", "backend_error"),
        ("ios", "sent", ""),
    ]
    assert "the exploding backend failed" in caplog.text


def test_notify_users_later_sends_after_commit_only(alice, django_capture_on_commit_callbacks, monkeypatch):
    PushDevice.objects.create(user=alice, platform="android", token=FCM_TOKEN)
    calls = []
    monkeypatch.setattr(push_deliver, "delay", lambda **kwargs: calls.append(kwargs))
    notification = push.Notification(title="Alice", body="hi", collapse_key="conv-12")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        push.notify_users_later(user_ids=[alice.id, alice.id], notification=notification)
        assert calls == []
    assert len(callbacks) == 1
    assert calls == [{"user_ids": [alice.id], "notification": notification.to_dict()}]

    calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                push.notify_users_later(user_ids=[alice.id], notification=notification)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
    assert calls == []


def test_the_task_delivers_eagerly(alice, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.INFO, logger="superapp.push")
    PushDevice.objects.create(user=alice, platform="android", token=FCM_TOKEN)
    with django_capture_on_commit_callbacks(execute=True):
        push.notify_users_later(user_ids=[alice.id], notification=push.Notification(title="Alice"))
    assert "push (console) to user" in caplog.text


def test_the_task_tolerates_users_and_devices_that_are_gone(alice):
    device = PushDevice.objects.create(user=alice, platform="android", token=FCM_TOKEN)
    payload = push.Notification(title="x").to_dict()
    device.delete()
    result = push_deliver.apply(kwargs={"user_ids": [alice.id, 999999], "notification": payload}).get()
    assert result["devices"] == 0


def test_system_check_reports_missing_credentials(settings):
    from superapp.core.push.checks import check_push_backends

    assert check_push_backends() == []
    settings.PUSH_BACKENDS = "android=fcm,ios=apns"
    settings.FCM_SERVICE_ACCOUNT_FILE = ""
    settings.APNS_KEY_FILE = ""
    errors = check_push_backends()
    assert [e.id for e in errors] == ["push.E002", "push.E002"]
    assert "FCM_SERVICE_ACCOUNT_FILE" in errors[1].msg and "APNS_KEY_FILE" in errors[0].msg
    settings.PUSH_BACKENDS = "phone=fcm"
    assert [e.id for e in check_push_backends()] == ["push.E001"]
