"""The messaging frames on the /ws/ socket (in-memory layer), presence, and lossless sync."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async as sync_to_async

from messaging import presence
from messaging.models import Message
from superapp.core import events as core_events
from superapp.core.models import Event
from tests.conftest import befriend
from tests.core.test_realtime import next_event, open_socket

from .conftest import cmid, direct, group, send

pytestmark = [pytest.mark.django_db(transaction=True)]


async def reply(ws, frame):
    await ws.send_json_to(frame)
    while True:
        got = await ws.receive_json_from(timeout=5)
        if got.get("ref") == frame.get("ref"):
            return got


async def test_send_frame_acks_after_commit_and_reaches_every_device(alice, bob):
    conv = await sync_to_async(direct)(alice, bob)
    alice_phone, alice_laptop, bob_phone = (
        await open_socket(alice),
        await open_socket(alice),
        await open_socket(bob),
    )
    ack = await reply(alice_phone, {"type": "message.send", "ref": "r1", "conversation_id": conv.pk,
                                    "client_msg_id": "m-1", "kind": "text", "text": "hello bob"})  # fmt: skip
    assert ack["type"] == "message.send.result" and ack["created"] is True
    assert ack["message"]["seq"] == 2 and ack["message"]["text"] == "hello bob"
    assert await sync_to_async(
        Message.objects.filter(pk=ack["message"]["id"]).exists
    )()  # stored before the ack
    for device in (bob_phone, alice_laptop):
        frame = await next_event(device, "message.new")
        assert set(frame) == {"type", "cursor", "data"}
        assert frame["data"]["id"] == ack["message"]["id"]
    retry = await reply(alice_phone, {"type": "message.send", "ref": "r2", "conversation_id": conv.pk,
                                      "client_msg_id": "m-1", "kind": "text", "text": "hello bob"})  # fmt: skip
    assert retry["created"] is False and retry["message"]["id"] == ack["message"]["id"]
    for ws in (alice_phone, alice_laptop, bob_phone):
        await ws.disconnect()


async def test_send_frame_to_user_creates_the_direct_chat(alice, bob):
    await sync_to_async(befriend)(alice, bob)
    ws, bob_ws = await open_socket(alice), await open_socket(bob)
    ack = await reply(
        ws,
        {
            "type": "message.send",
            "ref": 1,
            "to_user_id": bob.pk,
            "client_msg_id": "a",
            "kind": "text",
            "text": "yo",
        },
    )
    assert ack["type"] == "message.send.result"
    created = await next_event(bob_ws, "conversation.new")
    assert created["data"]["conversation"]["id"] == ack["message"]["conversation_id"]
    new = await next_event(bob_ws, "message.new")
    assert new["cursor"] == created["cursor"] + 1
    await ws.disconnect()
    await bob_ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "message.send", "kind": "text", "text": "x", "client_msg_id": "z"}, "invalid"),  # no target
        (
            {
                "type": "message.send",
                "conversation_id": "1",
                "kind": "text",
                "text": "x",
                "client_msg_id": "z",
            },
            "invalid",
        ),
        (
            {
                "type": "message.send",
                "conversation_id": 1,
                "kind": "laser",
                "text": "x",
                "client_msg_id": "z",
            },
            "unknown_kind",
        ),
        (
            {
                "type": "message.send",
                "conversation_id": 1,
                "kind": "text",
                "text": "x" * 5000,
                "client_msg_id": "z",
            },
            "text_too_long",
        ),
        ({"type": "message.recall", "conversation_id": 1}, "invalid"),
        ({"type": "message.recall", "conversation_id": 1, "seq": -3}, "invalid"),
        ({"type": "read", "conversation_id": 1, "seq": "x"}, "invalid"),
        ({"type": "typing"}, "invalid"),
        ({"type": "presence.query", "user_ids": "1"}, "invalid"),
        ({"type": "presence.query", "user_ids": []}, "invalid"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(alice, bob, frame, code):
    conv = await sync_to_async(direct)(alice, bob)
    if frame.get("conversation_id") == 1:
        frame = {**frame, "conversation_id": conv.pk}
    ws = await open_socket(alice)
    got = await reply(ws, {**frame, "ref": "bad"})
    assert got["type"] == "error" and got["error"]["code"] == code, got
    ok = await reply(
        ws,
        {
            "type": "message.send",
            "ref": "ok",
            "conversation_id": conv.pk,
            "client_msg_id": cmid(),
            "kind": "text",
            "text": "still here",
        },
    )
    assert ok["type"] == "message.send.result"
    assert await sync_to_async(Message.objects.count)() == 2
    await ws.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message.send", "kind": "text", "text": "x", "client_msg_id": "n1"},
        {"type": "message.recall", "seq": 1},
        {"type": "read", "seq": 1},
        {"type": "typing"},
    ],
)
async def test_non_members_get_not_found_from_every_frame(alice, bob, carol, frame):
    conv = await sync_to_async(direct)(alice, bob)
    ws = await open_socket(carol)
    got = await reply(ws, {**frame, "conversation_id": conv.pk, "ref": "x"})
    assert got["type"] == "error" and got["error"]["code"] == "conversation_not_found"
    assert await sync_to_async(Message.objects.count)() == 1
    await ws.disconnect()


async def test_typing_is_ephemeral_and_throttled(alice, bob):
    conv = await sync_to_async(direct)(alice, bob)
    ws, bob_ws = await open_socket(alice), await open_socket(bob)
    before = await sync_to_async(Event.objects.count)()
    assert (await reply(ws, {"type": "typing", "conversation_id": conv.pk, "ref": 1}))[
        "type"
    ] == "typing.result"
    frame = await next_event(bob_ws, "typing")
    assert frame == {"type": "typing", "data": {"conversation_id": conv.pk, "user_id": alice.pk}}  # no cursor
    await reply(ws, {"type": "typing", "conversation_id": conv.pk, "ref": 2})
    assert await bob_ws.receive_nothing(timeout=0.3)  # throttled
    assert await sync_to_async(Event.objects.count)() == before  # nothing stored
    await ws.disconnect()
    await bob_ws.disconnect()


async def test_read_receipt_reaches_the_peer_and_my_other_devices(alice, bob):
    conv = await sync_to_async(direct)(alice, bob)
    alice_ws, bob_phone, bob_laptop = await open_socket(alice), await open_socket(bob), await open_socket(bob)
    got = await reply(bob_phone, {"type": "read", "conversation_id": conv.pk, "seq": 1, "ref": "r"})
    assert got == {"type": "read.result", "conversation_id": conv.pk, "last_read_seq": 1, "ref": "r"}
    for ws in (alice_ws, bob_laptop):
        frame = await next_event(ws, "conversation.read")
        assert frame["data"] == {"conversation_id": conv.pk, "user_id": bob.pk, "last_read_seq": 1}
    bad = await reply(bob_phone, {"type": "read", "conversation_id": conv.pk, "seq": 5, "ref": "b"})
    assert bad["error"]["code"] == "bad_seq"
    for ws in (alice_ws, bob_phone, bob_laptop):
        await ws.disconnect()


async def test_recall_frame_reaches_every_member(alice, bob):
    conv = await sync_to_async(direct)(alice, bob)
    ws, bob_ws = await open_socket(alice), await open_socket(bob)
    got = await reply(ws, {"type": "message.recall", "conversation_id": conv.pk, "seq": 1, "ref": "r"})
    assert got["message"]["recalled"] is True and got["message"]["text"] == ""
    frame = await next_event(bob_ws, "message.recalled")
    assert frame["data"]["seq"] == 1 and frame["data"]["recalled_by"] == alice.pk
    await ws.disconnect()
    await bob_ws.disconnect()


async def test_presence_follows_open_sockets_and_tells_friends(alice, bob, carol):
    await sync_to_async(befriend)(alice, bob)
    bob_ws = await open_socket(bob)
    carol_ws = await open_socket(carol)
    alice_ws = await open_socket(alice)
    frame = await next_event(bob_ws, "presence")
    assert frame["data"]["user_id"] == alice.pk and frame["data"]["online"] is True
    assert await carol_ws.receive_nothing(timeout=0.2)  # not a friend
    assert presence.online_ids([alice.pk, bob.pk, carol.pk]) == {alice.pk, bob.pk, carol.pk}
    got = await reply(bob_ws, {"type": "presence.query", "user_ids": [alice.pk, carol.pk], "ref": "p"})
    assert got["presence"] == [
        {"user_id": alice.pk, "online": True, "last_seen_at": None},
        {"user_id": carol.pk, "online": None, "last_seen_at": None},  # carol shows friends only
    ]
    hb = await reply(alice_ws, {"type": "presence.heartbeat", "ref": "h"})
    assert hb["type"] == "presence.heartbeat.result" and isinstance(hb["cursor"], int)
    await alice_ws.disconnect()
    frame = await next_event(bob_ws, "presence")
    assert frame["data"]["online"] is False and frame["data"]["last_seen_at"]
    assert presence.online_ids([alice.pk]) == set()
    got = await reply(bob_ws, {"type": "presence.query", "user_ids": [alice.pk], "ref": "p2"})
    assert got["presence"][0]["online"] is False and got["presence"][0]["last_seen_at"]
    await bob_ws.disconnect()
    await carol_ws.disconnect()


async def test_reconnect_sync_of_1000_missed_messages_gets_each_once_in_order(
    alice, bob, carol, make_user, settings
):
    """A device goes away, 1,000 messages arrive in several conversations, it comes back and
    catches up with ``sync`` pages: every message exactly once, in cursor order."""
    settings.MESSAGING_PUSH_ENABLED = (
        False  # alice is offline: 1,000 eager push tasks would only slow this down
    )
    dave = await sync_to_async(make_user)(handle="dave")

    def setup():
        return [direct(alice, bob), direct(alice, carol), group(bob, alice, carol, dave)]

    conversations = await sync_to_async(setup)()
    ws = await open_socket(alice)
    hello = await reply(ws, {"type": "ping", "ref": "c"})
    cursor = hello["cursor"]
    await ws.disconnect()

    def flood():
        senders = [bob, carol, dave]
        ids = []
        for i in range(1000):
            conv = conversations[i % 3]
            sender = senders[i % 3] if i % 3 == 2 else (bob if i % 3 == 0 else carol)
            ids.append(send(sender, conv, text=f"m{i}").pk)
        return ids

    sent = await sync_to_async(flood)()
    ws = await open_socket(alice)
    received, pages = [], 0
    while True:
        page = await reply(ws, {"type": "sync", "since": cursor, "limit": 500, "ref": f"s{pages}"})
        pages += 1
        assert [e["cursor"] for e in page["events"]] == list(
            range(cursor + 1, cursor + 1 + len(page["events"]))
        )
        received += [e["data"]["id"] for e in page["events"] if e["type"] == "message.new"]
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert received == sent  # all, once, in order
    assert pages == 2  # 500 a page
    await ws.disconnect()


async def test_frames_dropped_by_the_layer_are_recovered_by_sync_without_gap_or_duplicate(
    alice, bob, monkeypatch
):
    """Half the doorbells are lost (as when channels-redis drops past capacity); a client that
    follows the cursor rule (gap -> sync) still ends with every message exactly once."""
    conv = await sync_to_async(direct)(alice, bob)
    ws = await open_socket(bob)
    start = (await reply(ws, {"type": "ping", "ref": 0}))["cursor"]
    real_push = core_events.push_envelopes
    counter = {"n": 0}

    def lossy(envelopes):
        counter["n"] += 1
        if counter["n"] % 2:
            real_push(envelopes)

    monkeypatch.setattr(core_events, "push_envelopes", lossy)

    def burst():
        return [send(alice, conv, text=f"b{i}").pk for i in range(40)]

    sent = await sync_to_async(burst)()
    seen, cursor, ids = set(), start, []
    deadline = asyncio.get_running_loop().time() + 10
    while len(ids) < len(sent) and asyncio.get_running_loop().time() < deadline:
        try:
            frame = await ws.receive_json_from(timeout=0.3)
        except TimeoutError:
            frame = None
        if frame and "cursor" in frame and frame["cursor"] == cursor + 1:
            cursor = frame["cursor"]
            ids.append(frame["data"]["id"])
            continue
        if frame and "cursor" in frame and frame["cursor"] <= cursor:
            continue  # already have it (a duplicate would be dropped here)
        page = await reply(ws, {"type": "sync", "since": cursor, "ref": f"s{cursor}"})  # a gap, or silence
        for e in page["events"]:
            ids.append(e["data"]["id"])
        cursor = page["cursor"]
        seen.add(cursor)
    assert ids == sent
    await ws.disconnect()
