"""Realtime across two real ASGI server processes through the Redis channel layer."""

import asyncio
import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async as sync_to_async

from accounts import services
from tests.conftest import login_tokens
from tests.processes import asgi_servers

pytestmark = pytest.mark.django_db(transaction=True)


async def recv_type(ws, type_, timeout=10):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
        if frame.get("type") == type_:
            return frame


def ws_url(base):
    return base.replace("http://", "ws://") + "/ws/"


async def test_events_cross_server_processes(alice, bob):
    alice_tokens = await sync_to_async(login_tokens)(alice)
    bob_tokens = await sync_to_async(login_tokens)(bob)
    search_token = services.friend_search_token(viewer=bob, target=alice)
    with asgi_servers(2) as (one, two):
        alice_proto = ["superapp.v1", f"superapp.auth.{alice_tokens['access']}"]
        bob_proto = ["superapp.v1", f"superapp.auth.{bob_tokens['access']}"]
        async with (
            websockets.connect(ws_url(one), subprotocols=alice_proto) as alice_phone,
            websockets.connect(ws_url(two), subprotocols=alice_proto) as alice_laptop,
            websockets.connect(ws_url(two), subprotocols=bob_proto) as bob_phone,
            httpx.AsyncClient(timeout=10) as http,
        ):
            assert alice_phone.subprotocol == "superapp.v1"
            # Bob asks through process 2; alice's devices on processes 1 and 2 both hear it.
            response = await http.post(
                f"{two}/api/v1/contacts/requests",
                json={"to_user_id": alice.pk, "note": "across", "search_token": search_token},
                headers={"Authorization": f"Bearer {bob_tokens['access']}"},
            )
            assert response.status_code == 201, response.text
            request_id = response.json()["request"]["id"]
            for device in (alice_phone, alice_laptop):
                frame = await recv_type(device, "contact.request.received")
                assert frame["data"]["request"]["id"] == request_id
                assert frame["cursor"] == 1

            # Alice accepts through process 1; bob (process 2) hears it.
            response = await http.post(
                f"{one}/api/v1/contacts/requests/{request_id}/accept",
                json={},
                headers={"Authorization": f"Bearer {alice_tokens['access']}"},
            )
            assert response.status_code == 200, response.text
            accepted = await recv_type(bob_phone, "contact.request.accepted")
            assert accepted["data"]["request"]["status"] == "accepted"

            # A sync frame on the other process returns the same stored stream.
            await alice_laptop.send(json.dumps({"type": "sync", "since": 0, "ref": "x"}))
            result = await recv_type(alice_laptop, "sync.result")
            assert [e["type"] for e in result["events"]] == [
                "contact.request.received",
                "contact.friend.added",
            ]
