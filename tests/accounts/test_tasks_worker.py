"""The verification code travels through Redis to a real Celery worker and is sent from there."""

import json
import os
import time

import pytest

from superapp.celery import app as celery_app
from tests.processes import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def real_queue():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved


def wait_for_line(path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return json.loads(path.read_text().splitlines()[0])
        time.sleep(0.2)
    raise AssertionError("the worker sent nothing")


def test_register_sends_code_through_a_real_worker(api, tmp_path, real_queue):
    sent_file = tmp_path / "sent.jsonl"
    with celery_worker(
        VERIFICATION_SENDER="tests.senders.FileSender", TEST_SENDER_FILE=str(sent_file)
    ) as queue:
        celery_app.conf.task_default_queue = queue
        response = api.post(
            "/api/v1/auth/register",
            {"email": "worker@example.com", "password": "correct horse battery", "display_name": "W"},
            format="json",
        )
        assert response.status_code == 201, response.json()
        sent = wait_for_line(sent_file)
    assert sent["destination"] == "worker@example.com"
    assert sent["pid"] != os.getpid()  # sent by the worker process, not in-process
    response = api.post(
        "/api/v1/auth/verify", {"login": "worker@example.com", "code": sent["code"]}, format="json"
    )
    assert response.status_code == 200, response.json()
