"""Across real processes: members on two uvicorn servers sharing the Redis channel layer, and
the push flush on a real Celery worker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from messaging.models import UserSettings
from superapp.celery import app as celery_app
from tests.conftest import login_tokens
from tests.processes import asgi_servers, celery_worker

from .conftest import direct, send

pytestmark = pytest.mark.django_db(transaction=True)


def ws_url(base):
    return base.replace("http://", "ws://") + "/ws/"


async def recv(ws, predicate, timeout=10):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
        if predicate(frame):
            return frame


async def test_chat_between_two_server_processes(alice, bob):
    conv = await sync_to_async(direct)(alice, bob)
    a = await sync_to_async(login_tokens)(alice)
    b = await sync_to_async(login_tokens)(bob)
    prefix = f"test-{uuid.uuid4().hex[:8]}"  # presence keys of this run only
    with asgi_servers(2, MESSAGING_PUSH_ENABLED="false", CACHE_KEY_PREFIX=prefix) as (one, two):
        async with (
            websockets.connect(
                ws_url(one), subprotocols=["superapp.v1", f"superapp.auth.{a['access']}"]
            ) as alice_ws,
            websockets.connect(
                ws_url(two), subprotocols=["superapp.v1", f"superapp.auth.{b['access']}"]
            ) as bob_ws,
        ):
            # Presence is shared through Redis: process 1 sees bob, connected to process 2.
            # (bob's socket hook runs just after his handshake: ask until it has.)
            for attempt in range(50):
                await alice_ws.send(
                    json.dumps({"type": "presence.query", "user_ids": [bob.pk], "ref": f"p{attempt}"})
                )
                got = await recv(alice_ws, lambda f, a=attempt: f.get("ref") == f"p{a}")
                if got["presence"][0]["online"]:
                    break
                await asyncio.sleep(0.1)
            assert got["presence"][0]["online"] is True
            # Send on process 1 -> ack there, the message on process 2.
            await alice_ws.send(json.dumps({"type": "message.send", "ref": "s", "conversation_id": conv.pk,
                                            "client_msg_id": "x-1", "kind": "text", "text": "across"}))  # fmt: skip
            ack = await recv(alice_ws, lambda f: f.get("ref") == "s")
            assert ack["type"] == "message.send.result", ack
            new = await recv(bob_ws, lambda f: f.get("type") == "message.new")
            assert new["data"]["id"] == ack["message"]["id"] and new["data"]["text"] == "across"
            # Typing (ephemeral) and a read receipt go back the other way.
            await bob_ws.send(json.dumps({"type": "typing", "conversation_id": conv.pk, "ref": "t"}))
            typing = await recv(alice_ws, lambda f: f.get("type") == "typing")
            assert typing["data"] == {"conversation_id": conv.pk, "user_id": bob.pk}
            await bob_ws.send(json.dumps({"type": "read", "conversation_id": conv.pk, "seq": 2, "ref": "r"}))
            receipt = await recv(alice_ws, lambda f: f.get("type") == "conversation.read")
            assert receipt["data"]["last_read_seq"] == 2
            # The same stored stream through the other process.
            await bob_ws.send(json.dumps({"type": "sync", "since": new["cursor"] - 1, "ref": "y"}))
            page = await recv(bob_ws, lambda f: f.get("ref") == "y")
            assert page["events"][0]["data"]["id"] == ack["message"]["id"]


@pytest.fixture
def real_queue():
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = saved


def test_offline_push_flush_runs_on_a_real_worker(alice, bob, settings, real_queue):
    settings.MESSAGING_PUSH_WINDOW = 0.5
    settings.MESSAGING_PUSH_ENABLED = False
    conv = direct(alice, bob)  # bob has no socket: offline
    settings.MESSAGING_PUSH_ENABLED = True
    with celery_worker() as queue:
        celery_app.conf.task_default_queue = queue
        msg = send(alice, conv, text="are you there?")
        deadline = time.time() + 30
        bookmark = 0
        while time.time() < deadline and bookmark < msg.pk:
            time.sleep(0.2)
            bookmark = (
                UserSettings.objects.filter(user=bob).values_list("last_pushed_message_id", flat=True).first()
                or 0
            )
    assert bookmark == msg.pk
