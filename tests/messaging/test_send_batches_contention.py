"""Batched sends under failure and contention (found by reviews of the batching): one send's
error, a lock held elsewhere, a retry in flight, many sockets at once."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
from channels.db import database_sync_to_async as sync_to_async

from messaging import services
from messaging.models import Conversation
from superapp.core import realtime
from superapp.core.models import UserStream
from tests.core.test_realtime import open_socket
from tests.threads import hold_locks

from .conftest import direct, group
from .test_send_batches import _send, _transactions


# --- one send's bad input (a lone surrogate) is its own outcome: 400 before the batch --------------
@pytest.mark.django_db
def test_a_lone_surrogate_in_one_send_does_not_roll_back_the_batch(alice, bob, carol):
    ab, ac = direct(alice, bob), direct(alice, carol)
    cb = direct(carol, bob)
    outcomes = services.message_send_many(
        [
            _send(alice, ab, "a"),
            _send(alice, ac, "b"),
            _send(carol, cb, "bad", "x\ud800y"),
            _send(bob, ab, "c"),
        ],
        defer=True,
    )
    # the bad one may fail; the others should still have been stored together, not deferred
    assert [outcomes[i] is None for i in (0, 1, 3)] == [False, False, False], outcomes


# --- numbers stay consecutive around a refused send ------------------------------------------------
@pytest.mark.django_db
def test_refused_between_accepted_keeps_consecutive_seqs(alice, bob, carol, make_user):
    outsider = make_user()
    team = group(alice, bob, carol)
    before = Conversation.objects.get(pk=team.pk).last_seq
    outcomes = services.message_send_many(
        [_send(alice, team, "a"), _send(outsider, team, "x"), _send(bob, team, "b"), _send(carol, team, "c")],
        defer=True,
    )
    assert outcomes[1] is None
    assert [outcomes[i].message.seq for i in (0, 2, 3)] == [before + 1, before + 2, before + 3]
    assert Conversation.objects.get(pk=team.pk).last_seq == before + 3
    assert _transactions([outcomes[i].message.pk for i in (0, 2, 3)]) == 1


# --- a retry while the first copy is in flight: the batch waits no longer than its lock timeout --
@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_is_in_flight(alice, bob, carol):
    ab, cb = direct(alice, bob), direct(carol, bob)
    first: dict = {}
    # The first copy, stored but not committed (another batch in flight).
    held = hold_locks(
        lambda: first.update(
            r=services.message_send(
                sender_id=alice.pk, client_msg_id="dup", kind="text", conversation_id=ab.pk, text="x"
            )
        )
    )
    try:
        outcomes = services.message_send_many(
            [_send(alice, ab, "dup", "x"), _send(carol, cb, "other")], defer=True
        )
        # The batch waited for alice's chat no longer than the lock timeout, then left both
        # sends to the caller (the socket consumer sends each on its own).
        assert outcomes == [None, None]
    finally:
        held.release()
    again = services.message_send(
        sender_id=alice.pk, client_msg_id="dup", kind="text", conversation_id=ab.pk, text="x"
    )
    assert not again.created and again.message.pk == first["r"].message.pk
    other = services.message_send(
        sender_id=carol.pk, client_msg_id="other", kind="text", conversation_id=cb.pk, text="hi"
    )
    assert other.created


# --- the batcher: two batches, the stall path, linger: every frame answered once, in order -------
# (No database, but the batcher's threads close their connections around each batch, and a
# connection an earlier test left on such a thread needs database access to be looked at.)
@pytest.mark.django_db(transaction=True)
async def test_batcher_stress_every_frame_answered_once(settings):
    from superapp.core.consumers import FrameBatcher

    settings.REALTIME_FRAME_BATCH_CONCURRENCY = 2
    settings.REALTIME_FRAME_BATCH_STALL_MS = 20
    settings.REALTIME_FRAME_BATCH_LINGER_MS = 2
    seen: list[int] = []
    lock = threading.Lock()
    inflight = {"now": 0, "max": 0}

    def handler(calls):
        import time

        with lock:
            inflight["now"] += 1
            inflight["max"] = max(inflight["max"], inflight["now"])
            seen.extend(c.frame["n"] for c in calls)
        time.sleep(random.choice([0, 0, 0.001, 0.005, 0.06]))
        with lock:
            inflight["now"] -= 1
        return [realtime.NOT_BATCHED if c.frame["n"] % 7 == 0 else {"n": c.frame["n"]} for c in calls]

    batcher = FrameBatcher(handler)

    async def socket(k: int) -> list:
        got = []
        for i in range(25):
            n = k * 1000 + i
            out = await batcher.submit(
                realtime.FrameCall(user_id=k, session_id="s", frame={"n": n}, language="en")
            )
            got.append(n if out is realtime.NOT_BATCHED else out["n"])
            if random.random() < 0.3:
                await asyncio.sleep(random.random() / 100)
        return got

    async with asyncio.timeout(60):
        results = await asyncio.gather(*(socket(k) for k in range(12)))
    for k, got in enumerate(results):
        assert got == [k * 1000 + i for i in range(25)]
    assert sorted(seen) == sorted(n for k in range(12) for n in (k * 1000 + i for i in range(25)))
    assert (
        not batcher.waiting and not batcher.draining and not batcher.running_since and not batcher.lingering
    )
    assert inflight["max"] >= 2  # batches really ran side by side


# --- sends waiting for a locked chat in their own threads never leave batches without a thread ----
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batching", [True])  # (off, each frame takes a shared thread: see the note)
async def test_deferred_sends_waiting_on_a_lock_do_not_stall_other_chats(
    make_user, carol, bob, settings, batching
):
    settings.REALTIME_FRAME_BATCHING = batching
    users = [await sync_to_async(make_user)() for _ in range(8)]
    team = await sync_to_async(group)(users[0], *users[1:])
    cb = await sync_to_async(direct)(carol, bob)
    held = await sync_to_async(hold_locks)(lambda: Conversation.objects.select_for_update().get(pk=team.pk))
    sockets = [await open_socket(u) for u in users]
    ws_c = await open_socket(carol)
    try:
        for k, ws in enumerate(sockets):
            await ws.send_json_to({"type": "message.send", "ref": f"t{k}", "conversation_id": team.pk,
                                   "client_msg_id": f"t{k}", "kind": "text", "text": "to the locked group"})  # fmt: skip
        await asyncio.sleep(0.5)
        await ws_c.send_json_to({"type": "message.send", "ref": "c", "conversation_id": cb.pk, "client_msg_id": "c1",
                                 "kind": "text", "text": "unrelated chat"})  # fmt: skip
        while (frame := await ws_c.receive_json_from(timeout=3)).get("ref") != "c":
            pass
        assert frame["type"] == "message.send.result" and frame["created"]
    finally:
        await held.arelease()
        for k, ws in enumerate(sockets):
            while (frame := await ws.receive_json_from(timeout=10)).get("ref") != f"t{k}":
                pass
        for ws in (*sockets, ws_c):
            await ws.disconnect()


# --- a stream head held elsewhere: a batch gives up after its lock timeout, holding no one up -----
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batching", [True, False])
async def test_a_held_stream_head_stalls_only_the_sends_to_its_user(
    make_user, carol, bob, settings, batching
):
    settings.REALTIME_FRAME_BATCHING = batching
    settings.REALTIME_FRAME_BATCH_STALL_MS = 50
    victim = await sync_to_async(make_user)()
    senders = [await sync_to_async(make_user)() for _ in range(5)]
    chats = [await sync_to_async(direct)(s, victim) for s in senders]
    cb = await sync_to_async(direct)(carol, bob)
    held = await sync_to_async(hold_locks)(
        lambda: list(UserStream.objects.select_for_update().filter(user_id=victim.pk))
    )
    sockets = [await open_socket(u) for u in senders]
    ws_c = await open_socket(carol)
    try:
        for k, (ws, chat) in enumerate(zip(sockets, chats, strict=True)):
            await ws.send_json_to({"type": "message.send", "ref": f"t{k}", "conversation_id": chat.pk,
                                   "client_msg_id": f"t{k}", "kind": "text", "text": "to the victim"})  # fmt: skip
            await asyncio.sleep(0.12)  # each one its own stalled batch
        await ws_c.send_json_to({"type": "message.send", "ref": "c", "conversation_id": cb.pk, "client_msg_id": "c1",
                                 "kind": "text", "text": "unrelated chat"})  # fmt: skip
        while (frame := await ws_c.receive_json_from(timeout=3)).get("ref") != "c":
            pass
        assert frame["type"] == "message.send.result" and frame["created"]
    finally:
        await held.arelease()
        for k, ws in enumerate(sockets):
            while (frame := await ws.receive_json_from(timeout=10)).get("ref") != f"t{k}":
                pass
        for ws in (*sockets, ws_c):
            await ws.disconnect()


# --- a refused send that is not plain (a reply to a missing seq) costs only itself ----------------
@pytest.mark.django_db
def test_a_reply_to_a_missing_message_does_not_roll_back_the_batch(alice, bob, carol):
    ab, ac, cb = direct(alice, bob), direct(alice, carol), direct(carol, bob)
    outcomes = services.message_send_many(
        [
            _send(alice, ab, "a"),
            _send(alice, ac, "b"),
            _send(carol, cb, "r", "re", reply_to_seq=999),
            _send(bob, ab, "c"),
        ],
        defer=True,
    )
    assert [outcomes[i] is None for i in (0, 1, 3)] == [False, False, False], outcomes
