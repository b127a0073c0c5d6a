"""Across real processes: the fan-out task on a real Celery worker, and a notification reaching
a socket through a real server and the Redis channel layer."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from moments.models import Post, Timeline
from superapp.celery import app as celery_app
from tests.conftest import befriend, login_tokens
from tests.processes import asgi_servers, celery_worker

from .conftest import publish

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def real_queue():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved


def test_fan_out_runs_on_a_real_worker(make_user, settings, real_queue):
    settings.MOMENTS_FANOUT_INLINE_MAX = 1
    author = make_user(handle="author")
    friends = [make_user() for _ in range(30)]
    for friend in friends:
        befriend(author, friend)
    with celery_worker() as queue:
        celery_app.conf.task_default_queue = queue
        post = publish(author)  # commits (no test transaction here): the task goes to Redis
        assert Timeline.objects.filter(post=post).count() == 1  # the author's own, written inline
        deadline = time.time() + 30
        while time.time() < deadline and Timeline.objects.filter(post=post).count() < 31:
            time.sleep(0.1)
    assert set(Timeline.objects.filter(post=post).values_list("user_id", flat=True)) == {
        author.pk,
        *(f.pk for f in friends),
    }
    assert Post.objects.get(pk=post.pk).fanned_out_at is not None


async def _next(ws, type_, timeout=10):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
        if frame.get("type") == type_:
            return frame


async def test_like_reaches_the_authors_socket_through_redis(alice, bob):
    await sync_to_async(befriend)(alice, bob)
    post = await sync_to_async(publish)(alice, "look")
    alice_tokens = await sync_to_async(login_tokens)(alice)
    bob_tokens = await sync_to_async(login_tokens)(bob)
    with asgi_servers(2) as (one, two):
        proto = ["superapp.v1", f"superapp.auth.{alice_tokens['access']}"]
        async with (
            websockets.connect(one.replace("http://", "ws://") + "/ws/", subprotocols=proto) as alice_ws,
            httpx.AsyncClient(timeout=10) as http,
        ):
            # bob likes through the other process: the doorbell crosses Redis.
            response = await http.put(
                f"{two}/api/v1/moments/posts/{post.pk}/like",
                headers={"Authorization": f"Bearer {bob_tokens['access']}"},
            )
            assert response.status_code == 204, response.text
            frame = await _next(alice_ws, "moments.interaction")
            assert frame["data"]["notification"]["kind"] == "like"
            assert frame["data"]["notification"]["actor"]["handle"] == "bob"
            assert frame["data"]["unread_count"] == 1
            assert frame["cursor"] >= 1
