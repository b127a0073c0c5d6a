"""Push delivery through Redis and a real Celery worker, to the fake FCM on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from superapp.celery import app as celery_app
from superapp.core import push
from superapp.core.push.models import PushDevice
from tests.fakes.fcm import FakeFcm
from tests.processes import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "dA1b2C3d4E5f6:APA91bH" + "x" * 140
DEAD_TOKEN = "fZ9y8X7w6V5u4:APA91bK" + "z" * 140


@pytest.fixture
def real_queue():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved


def wait_for(condition, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("the worker did not deliver in time")


def test_a_worker_delivers_after_commit_and_retries_after_retry_after(real_queue, tmp_path, alice, bob):
    live = PushDevice.objects.create(user=alice, platform="android", token=TOKEN)
    dead = PushDevice.objects.create(user=bob, platform="android", token=DEAD_TOKEN)
    with FakeFcm() as fake:
        fake.answer(TOKEN, "quota", retry_after="2")
        fake.answer(DEAD_TOKEN, "unregistered")
        env = {
            "PUSH_BACKENDS": "android=fcm",
            "FCM_SERVICE_ACCOUNT_FILE": str(fake.service_account_file(tmp_path)),
            "FCM_BASE_URL": fake.url,
        }
        with celery_worker(**env) as queue:
            celery_app.conf.task_default_queue = queue
            with transaction.atomic():
                push.notify_users_later(
                    user_ids=[alice.id, bob.id],
                    notification=push.Notification(title="Alice", body="hi", data={"conversation_id": "12"}),
                )
                time.sleep(0.5)
                assert fake.sends == []  # nothing before commit
            wait_for(lambda: len(fake.sent_to(TOKEN)) >= 2)

    first, second = fake.sent_to(TOKEN)
    assert (first["answer"], second["answer"]) == ("quota", "ok")
    assert second["at"] - first["at"] >= 1.9  # Retry-After: 2
    assert len(fake.sent_to(DEAD_TOKEN)) == 1  # the retry is for the failed device only
    assert len(fake.oauth_exchanges) == 1  # the worker process kept its access token
    assert fake.errors == []
    live.refresh_from_db()
    dead.refresh_from_db()
    assert live.disabled_at is None
    assert dead.disabled_reason == "unregistered"
