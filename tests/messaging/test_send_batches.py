"""Sends handled in batches (services.message_send_many, and the consumer's FrameBatcher that
feeds it): each send gets what message_send would have given it, for one transaction."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import sync_to_async as asgiref_sync_to_async
from channels.db import database_sync_to_async as sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from accounts import services as account_services
from messaging import events, services
from messaging.models import Conversation, Member, Message
from superapp.core import events as core_events
from superapp.core import realtime
from superapp.core.errors import ApplicationError
from superapp.core.models import Event
from tests.core.test_realtime import next_event, open_socket
from tests.threads import hold_locks

from .conftest import direct, group


def _send(sender, conv, cmid, text="hi", **extra):
    return {"sender_id": sender.pk, "client_msg_id": cmid, "kind": "text", "conversation_id": conv.pk,
            "text": text, **extra}  # fmt: skip


def _transactions(message_ids) -> int:
    """How many transactions wrote these rows (PostgreSQL's xmin)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT xmin::text) FROM messaging_message WHERE id = ANY(%s)", [list(message_ids)]
        )
        return cursor.fetchone()[0]


def _stream(user) -> list[tuple[int, str, dict]]:
    return list(Event.objects.filter(user=user).order_by("seq").values_list("seq", "type", "data"))


@pytest.mark.django_db
def test_a_batch_stores_each_send_as_message_send_would_in_one_transaction(alice, bob, carol):
    ab, ac = direct(alice, bob), direct(alice, carol)
    team = group(alice, bob, carol)
    sends = [
        _send(alice, ab, "a1", "to bob"),
        _send(bob, ab, "b1", "to alice"),
        _send(carol, team, "c1", "to the team"),
        _send(alice, ac, "a2", "to carol"),
        _send(bob, team, "b2", "me too", reply_to_seq=None),
    ]
    before = {u.pk: _stream(u) for u in (alice, bob, carol)}
    with CaptureQueriesContext(connection) as queries:
        outcomes = services.message_send_many(sends)
    assert all(isinstance(o, services.SendResult) and o.created for o in outcomes), outcomes
    assert [o.message.text for o in outcomes] == ["to bob", "to alice", "to the team", "to carol", "me too"]
    # One transaction (the rows share the inserting transaction's id), a fixed number of
    # statements: the lock timeout, locks, stored keys, members, relations, the new ids (one
    # pipeline under psycopg 3), then the rows and the publish (a second one).
    assert _transactions([o.message.pk for o in outcomes]) == 1
    sql = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(sql) == 8, [q[:60] for q in sql]  # (the savepoints: this test's own transaction)
    # Each conversation's sequence has no gap; each stream gets its events in cursor order, one
    # message.new per message the user is a member of.
    for conv in (ab, ac, team):
        seqs = list(Message.objects.filter(conversation=conv).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    for user, expected in ((alice, 5), (bob, 4), (carol, 3)):
        new = _stream(user)[len(before[user.pk]) :]
        assert [t for _, t, _ in new] == [events.MESSAGE_NEW] * expected
        cursors = [c for c, _, _ in new]
        assert cursors == list(range(cursors[0], cursors[0] + expected))
    # The senders have read their own messages; the others have them unread.
    assert services.message_send_many([_send(alice, ab, "a1", "to bob")])[0].created is False


@pytest.mark.django_db
def test_a_batched_plain_message_is_the_row_and_the_event_message_send_makes(
    alice, bob, carol, client_for, monkeypatch, django_capture_on_commit_callbacks
):
    """The set statements (_core.PlainBatch) against the one-by-one path: the same row, read
    marks, conversation fields, event payload, and the full-text search finds it."""
    ab, team = direct(alice, bob), group(alice, bob, carol)
    alone = services.message_send(
        sender_id=alice.pk,
        client_msg_id="alone",
        kind="text",
        conversation_id=ab.pk,
        text="Blue Bottle alone",
    ).message
    reply_target = alone.seq
    rung: list[list[tuple[int, int]]] = []
    monkeypatch.setattr(
        core_events, "push_envelopes", lambda envelopes: rung.append([(u, e["cursor"]) for u, e in envelopes])
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = services.message_send_many(
            [
                _send(alice, ab, "batched", "Blue Bottle batched"),
                _send(bob, ab, "quoting", "a reply", reply_to_seq=reply_target),  # not plain: one by one
                _send(carol, team, "grouped", "for the group"),
                {**_send(bob, team, "located", ""), "kind": "location",
                 "content_fields": {"latitude": 31.2, "longitude": 121.5, "name": "Bund"}},
            ]
        )  # fmt: skip
    assert all(isinstance(o, services.SendResult) and o.created for o in outcomes), outcomes
    batched, quoting, grouped, located = (o.message for o in outcomes)
    # One publish for the plain and the other sends together: one doorbell.
    assert len(rung) == 1 and sorted(rung[0]) == sorted(
        (e.user_id, e.seq) for e in Event.objects.filter(data__id__in=[o.message.pk for o in outcomes])
    )
    assert (batched.seq, quoting.seq) == (alone.seq + 1, alone.seq + 2)
    fields = ["conversation_id", "sender_id", "kind", "text", "content", "reply_to_id", "mentions", "mention_all",
              "forwarded", "recalled_at"]  # fmt: skip
    for built in (batched, grouped, located):
        stored = Message.objects.get(pk=built.pk)
        assert {f: getattr(built, f) for f in fields} == {f: getattr(stored, f) for f in fields}
        assert built.created_at == stored.created_at and built.seq == stored.seq
        assert events.message(built) == events.message(stored)
        event = Event.objects.filter(type=events.MESSAGE_NEW, data__id=built.pk).first()
        assert event is not None and event.data == events.message(stored)
    conv = Conversation.objects.get(pk=ab.pk)
    assert conv.last_seq == quoting.seq and conv.last_message_at >= batched.created_at
    marks = dict(Member.objects.filter(conversation=ab).values_list("user_id", "last_read_seq"))
    assert marks == {alice.pk: batched.seq, bob.pk: quoting.seq}  # each sender read their own
    team_marks = dict(Member.objects.filter(conversation=team).values_list("user_id", "last_read_seq"))
    assert team_marks[carol.pk] == grouped.seq and team_marks[bob.pk] == located.seq
    assert team_marks[alice.pk] < grouped.seq  # alice has both unread
    found = client_for(bob).get("/api/v1/messaging/search", {"q": "bottle batched"}).json()["results"]
    assert [m["id"] for m in found] == [batched.pk]


@pytest.mark.django_db
def test_one_failing_send_leaves_the_others_as_they_would_be_alone(alice, bob, carol, make_user):
    ab, ac = direct(alice, bob), direct(alice, carol)
    stranger_group = group(carol, make_user())
    account_services.block_add(user=carol, target_id=alice.pk)  # alice can no longer write to carol
    sends = [
        _send(alice, ab, "ok-1"),
        _send(alice, ac, "blocked"),
        _send(alice, stranger_group, "not-a-member"),
        {"sender_id": bob.pk, "client_msg_id": "bad", "kind": "nonsense", "conversation_id": ab.pk},
        _send(bob, ab, "ok-2"),
        _send(bob, ab, "ok-2"),  # the same send twice in one batch: stored once
    ]
    outcomes = services.message_send_many(sends)
    assert isinstance(outcomes[0], services.SendResult) and outcomes[0].created
    assert isinstance(outcomes[1], ApplicationError) and outcomes[1].status_code == 403
    assert isinstance(outcomes[2], ApplicationError) and outcomes[2].code == "conversation_not_found"
    assert isinstance(outcomes[3], ApplicationError) and outcomes[3].status_code == 400
    assert (
        outcomes[4].created and not outcomes[5].created and outcomes[5].message.pk == outcomes[4].message.pk
    )
    assert not Message.objects.filter(client_msg_id__in=["blocked", "not-a-member", "bad"]).exists()
    seqs = list(Message.objects.filter(conversation=ab).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert Conversation.objects.get(pk=ac.pk).last_seq == 1  # the refused send took no number


@pytest.mark.django_db
def test_errors_speak_each_senders_language(alice, bob):
    ab = direct(alice, bob)
    sends = [_send(alice, ab, "x" * 200), _send(bob, ab, "y" * 200)]
    outcomes = services.message_send_many(sends, languages=["zh-hans", "en"])
    assert all(isinstance(o, ApplicationError) for o in outcomes)
    assert outcomes[0].as_dict()["error"]["message"] != outcomes[1].as_dict()["error"]["message"]


@pytest.mark.django_db
def test_an_unexpected_failure_is_only_that_sends_outcome(alice, bob, carol, monkeypatch):
    ab, ac = direct(alice, bob), direct(alice, carol)
    from messaging.services import messages

    real = messages._send

    def failing(sender_id, client_msg_id, *args, **kwargs):
        if client_msg_id == "boom":
            raise RuntimeError("boom")
        return real(sender_id, client_msg_id, *args, **kwargs)

    def batch_failing(together, shared):
        raise RuntimeError("the batch broke")

    monkeypatch.setattr(messages, "_send", failing)
    monkeypatch.setattr(messages, "_send_together", batch_failing)
    outcomes = services.message_send_many([_send(alice, ab, "fine"), _send(alice, ac, "boom")])
    assert isinstance(outcomes[0], services.SendResult) and outcomes[0].created
    assert isinstance(outcomes[1], RuntimeError)
    assert Message.objects.filter(client_msg_id="fine").count() == 1


# --- through the socket: the consumer's batcher --------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_sockets_sending_together_share_batches_and_lose_nothing(make_user, monkeypatch):
    """12 pairs send 10 messages each over their sockets at the same time: every send is
    acknowledged once, stored once, numbered without a gap, and reaches its receiver; and the
    frames were really handled in batches of more than one."""
    pairs = []
    for _ in range(12):
        a, b = await sync_to_async(make_user)(), await sync_to_async(make_user)()
        pairs.append((a, b, await sync_to_async(direct)(a, b)))
    handler = realtime.get_frame_batch_handler("message.send")
    sizes: list[int] = []

    def counting(calls):
        sizes.append(len(calls))
        return handler(calls)

    monkeypatch.setitem(realtime._batch_handlers, "message.send", counting)
    senders = [await open_socket(a) for a, _, _ in pairs]
    receivers = [await open_socket(b) for _, b, _ in pairs]

    async def talk(index: int) -> list[dict]:
        ws, (_, _, conv) = senders[index], pairs[index]
        acks = []
        for n in range(10):
            ref = f"{index}-{n}"
            await ws.send_json_to({"type": "message.send", "ref": ref, "conversation_id": conv.pk,
                                   "client_msg_id": ref, "kind": "text", "text": f"m{n}"})  # fmt: skip
            while True:
                frame = await ws.receive_json_from(timeout=10)
                if frame.get("ref") == ref:
                    acks.append(frame)
                    break
        return acks

    results = await asyncio.gather(*(talk(i) for i in range(12)))
    for index, acks in enumerate(results):
        assert [a["type"] for a in acks] == ["message.send.result"] * 10, acks[:2]
        assert [a["message"]["seq"] for a in acks] == list(range(2, 12))  # 1 is direct()'s message
        got = [await next_event(receivers[index], "message.new") for _ in range(10)]
        assert [g["data"]["text"] for g in got] == [f"m{n}" for n in range(10)]
    assert sum(sizes) == 120 and max(sizes) > 1, sizes
    for ws in senders + receivers:
        await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_batch_handler_that_breaks_fails_only_its_frames_and_the_socket_lives(
    alice, bob, monkeypatch
):
    conv = await sync_to_async(direct)(alice, bob)
    ws = await open_socket(alice)

    def broken(calls):
        raise RuntimeError("broken")

    monkeypatch.setitem(realtime._batch_handlers, "message.send", broken)
    await ws.send_json_to({"type": "message.send", "ref": "1", "conversation_id": conv.pk, "client_msg_id": "x",
                           "kind": "text", "text": "hi"})  # fmt: skip
    error = await ws.receive_json_from(timeout=5)
    assert (error["type"], error["error"]["code"], error["ref"]) == ("error", "server_error", "1")
    monkeypatch.undo()
    await ws.send_json_to({"type": "message.send", "ref": "2", "conversation_id": conv.pk, "client_msg_id": "x",
                           "kind": "text", "text": "hi"})  # fmt: skip
    while (frame := await ws.receive_json_from(timeout=5)).get("ref") != "2":
        pass
    assert frame["type"] == "message.send.result" and frame["created"] is True
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_without_batching_each_frame_goes_to_its_own_handler(alice, bob, settings, monkeypatch):
    settings.REALTIME_FRAME_BATCHING = False
    conv = await sync_to_async(direct)(alice, bob)

    def never(calls):
        raise AssertionError("batched")

    monkeypatch.setitem(realtime._batch_handlers, "message.send", never)
    ws = await open_socket(alice)
    await ws.send_json_to({"type": "message.send", "ref": "1", "conversation_id": conv.pk, "client_msg_id": "x",
                           "kind": "text", "text": "hi"})  # fmt: skip
    while (frame := await ws.receive_json_from(timeout=5)).get("ref") != "1":
        pass
    assert frame["type"] == "message.send.result"
    await ws.disconnect()


def _open_connections() -> list[str]:
    """The database connections open in this thread."""
    return [c.alias for c in connections.all(initialized_only=True) if c.connection is not None]


async def _in_each_thread(executor: ThreadPoolExecutor, job: Callable[[], Any]) -> list[Any]:
    """``job()`` once in every thread of the executor (each waits until all have started)."""
    count = executor._max_workers
    gate = threading.Barrier(count)

    def run() -> Any:
        gate.wait(timeout=10)
        return job()

    loop = asyncio.get_running_loop()
    return await asyncio.gather(*(loop.run_in_executor(executor, run) for _ in range(count)))


@pytest.mark.django_db(transaction=True)
async def test_the_threads_that_ran_frames_keep_no_connection(make_user):
    """Once sockets' frames are answered, no thread that ran them holds a database connection
    (with Django's pool, each would keep one of its connections out): the batch threads, the
    shared executor's (here a small one of the test's own) and the thread-sensitive one (the
    socket's authentication and hooks); with sockets awaited side by side, as in the other socket
    tests (channels' test communicator stopped the closing there: tests/conftest.py)."""
    from superapp.core.consumers import _BATCH_EXECUTOR

    shared = ThreadPoolExecutor(2, thread_name_prefix="test-frames")
    asyncio.get_running_loop().set_default_executor(shared)
    users = [await sync_to_async(make_user)() for _ in range(4)]
    team = await sync_to_async(group)(users[0], *users[1:])
    sockets = [await open_socket(u) for u in users]

    async def talk(k: int, ws) -> None:
        for ref, frame in [
            (f"s{k}", {"type": "message.send", "conversation_id": team.pk, "client_msg_id": f"s{k}",
                       "kind": "text", "text": "hi"}),  # (batched)
            (f"h{k}", {"type": "presence.heartbeat"}),  # (the shared executor)
        ]:  # fmt: skip
            await ws.send_json_to({**frame, "ref": ref})
            while (reply := await ws.receive_json_from(timeout=10)).get("ref") != ref:
                pass
            assert reply["type"].endswith(".result"), reply

    await asyncio.gather(*(talk(k, ws) for k, ws in enumerate(sockets)))
    for ws in sockets:
        await ws.disconnect()
    assert await _in_each_thread(_BATCH_EXECUTOR, _open_connections) == [[]] * _BATCH_EXECUTOR._max_workers
    assert await _in_each_thread(shared, _open_connections) == [[], []]
    assert await asgiref_sync_to_async(_open_connections)() == []  # the thread-sensitive thread


@pytest.mark.django_db
def test_a_refused_send_is_left_out_and_the_others_still_share_one_transaction(alice, bob, carol, make_user):
    ab, ac, bc = direct(alice, bob), direct(alice, carol), direct(bob, carol)
    not_mine = group(carol, make_user())
    outcomes = services.message_send_many(
        [_send(alice, ab, "a"), _send(alice, not_mine, "refused"), _send(alice, ac, "b"), _send(bob, bc, "c")]
    )
    assert isinstance(outcomes[1], ApplicationError) and outcomes[1].code == "conversation_not_found"
    stored = [o.message.pk for i, o in enumerate(outcomes) if i != 1]
    assert _transactions(stored) == 1  # the batch went on without it


@pytest.mark.django_db
def test_with_defer_the_sends_that_go_alone_are_left_to_the_caller(alice, bob, carol, make_user):
    ab, ac = direct(alice, bob), direct(alice, carol)
    account_services.block_add(user=carol, target_id=alice.pk)
    done = services.message_send(
        sender_id=alice.pk, client_msg_id="old", kind="text", conversation_id=ab.pk, text="x"
    )
    outcomes = services.message_send_many(
        [
            _send(alice, ab, "new"),
            _send(alice, ab, "old", "x"),  # a retry
            _send(alice, ac, "blocked"),  # refused: its own path says why
            {"sender_id": alice.pk, "client_msg_id": "to", "kind": "text", "to_user_id": bob.pk, "text": "y"},
            {"sender_id": bob.pk, "client_msg_id": "bad", "kind": "nonsense", "conversation_id": ab.pk},
            _send(bob, ab, "new"),
        ],
        defer=True,
    )
    assert outcomes[1] is None and outcomes[2] is None and outcomes[3] is None
    assert isinstance(outcomes[4], ApplicationError)
    assert outcomes[0].created and outcomes[5].created
    assert not Message.objects.filter(client_msg_id__in=["blocked", "to"]).exists()
    assert Message.objects.filter(client_msg_id="old").get().pk == done.message.pk


@pytest.mark.django_db
def test_an_unexpected_error_in_one_sends_input_is_only_that_sends_outcome(alice, bob, carol):
    ab, ac = direct(alice, bob), direct(alice, carol)
    huge = {"latitude": 10**400, "longitude": 1.0, "name": "x"}  # valid JSON; overflows a float
    outcomes = services.message_send_many(
        [
            _send(alice, ab, "fine"),
            {**_send(alice, ac, "loc", ""), "kind": "location", "content_fields": huge},
        ]
    )
    assert isinstance(outcomes[0], services.SendResult) and outcomes[0].created
    assert isinstance(outcomes[1], ApplicationError) and outcomes[1].status_code == 400


async def test_a_frame_submitted_right_after_a_reply_is_handled():
    """A drain leaves the batcher in the same step as its last look at the queue: a frame that
    arrives as a batch ends starts a new one instead of waiting for a drain that stopped."""
    from superapp.core.consumers import FrameBatcher

    batcher = FrameBatcher(lambda calls: [{"n": call.frame["n"]} for call in calls])

    def call(n):
        return realtime.FrameCall(user_id=1, session_id="s", frame={"n": n}, language="en")

    assert await batcher.submit(call(1)) == {"n": 1}
    async with asyncio.timeout(3):
        assert await batcher.submit(call(2)) == {"n": 2}


@pytest.mark.django_db(transaction=True)  # (the batch threads close connections earlier tests left)
async def test_senders_that_send_again_at_once_share_one_batch(settings):
    """16 sockets, each sending its next frame as soon as its reply comes, the second 8 starting
    while the first 8's batch runs: the next batch waits (up to the linger) for the senders of
    the last two batches instead of leaving without them, so the two groups merge into full
    batches instead of alternating, each half as full."""
    import time

    from superapp.core.consumers import FrameBatcher

    settings.REALTIME_FRAME_BATCH_CONCURRENCY = 1  # (the default)
    settings.REALTIME_FRAME_BATCH_LINGER_MS = 50.0  # the mechanism, not the value, is tested
    sizes: list[int] = []

    def handler(calls):
        sizes.append(len(calls))
        time.sleep(0.01)  # a batch's trip to the database
        return [{"n": call.frame["n"]} for call in calls]

    batcher = FrameBatcher(handler)

    async def sender(user_id):
        await asyncio.sleep(0.002 if user_id >= 8 else 0)  # the second group comes mid-batch
        for n in range(20):
            call = realtime.FrameCall(user_id=user_id, session_id="s", frame={"n": n}, language="en")
            assert await batcher.submit(call) == {"n": n}
            await asyncio.sleep(0.0005)  # the reply's and the next frame's way through the network

    async with asyncio.timeout(30):
        await asyncio.gather(*(sender(u) for u in range(16)))
    assert sum(sizes) == 16 * 20
    steady = sorted(sizes[3:-3])
    assert steady[len(steady) // 2] == 16, sizes  # the median batch has every sender


def _call(user_id, n=0):
    return realtime.FrameCall(user_id=user_id, session_id="s", frame={"n": n}, language="en")


@pytest.mark.django_db(transaction=True)
async def test_an_idle_processs_lone_frame_runs_at_once(settings):
    """The linger waits only for senders whose batch ended moments ago (they are about to send
    again), not for those of a batch long gone."""
    import time

    from superapp.core.consumers import FrameBatcher

    settings.REALTIME_FRAME_BATCH_LINGER_MS = 300.0  # long enough to see
    batcher = FrameBatcher(lambda calls: [{"n": c.frame["n"]} for c in calls])
    assert await batcher.submit(_call(1)) == {"n": 0}
    assert await batcher.submit(_call(2)) == {"n": 0}
    await asyncio.sleep(0.2)
    started = time.monotonic()
    assert await batcher.submit(_call(1, 1)) == {"n": 1}
    assert time.monotonic() - started < 0.1


@pytest.mark.django_db(transaction=True)
async def test_senders_that_left_hold_up_one_batch_at_most_by_one_linger(settings):
    import time

    from superapp.core.consumers import FrameBatcher

    settings.REALTIME_FRAME_BATCH_LINGER_MS = 300.0
    batcher = FrameBatcher(lambda calls: [{"n": c.frame["n"]} for c in calls])
    await asyncio.gather(*(batcher.submit(_call(u)) for u in range(10)))  # then these 10 sockets close
    waits = []
    for n in range(3):
        started = time.monotonic()
        assert await batcher.submit(_call(99, n)) == {"n": n}
        waits.append(time.monotonic() - started)
    assert waits[0] < 0.4 and max(waits[1:]) < 0.1, waits


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("together", [False, True])
async def test_a_send_waiting_for_a_lock_holds_up_no_other_conversation(alice, bob, carol, together):
    """Another transaction (a payment, a group operation) holds alice's chat locked: alice's send
    waits for it, and carol's send to another chat is answered meanwhile, whether alice's frame
    was alone in its batch or batched with others."""
    ab = await sync_to_async(direct)(alice, bob)
    cb = await sync_to_async(direct)(carol, bob)
    held = await sync_to_async(hold_locks)(lambda: Conversation.objects.select_for_update().get(pk=ab.pk))
    ws_a, ws_c, ws_b = await open_socket(alice), await open_socket(carol), await open_socket(bob)
    try:
        frames = [(ws_a, {"type": "message.send", "ref": "a", "conversation_id": ab.pk, "client_msg_id": "a1",
                          "kind": "text", "text": "waits for the lock"})]  # fmt: skip
        if together:  # bob sends in the same moment: alice's frame is in a batch of two
            frames.append((ws_b, {"type": "message.send", "ref": "b", "conversation_id": cb.pk,
                                  "client_msg_id": "b1", "kind": "text", "text": "beside it"}))  # fmt: skip
        for ws, frame in frames:
            await ws.send_json_to(frame)
        await asyncio.sleep(0.3)
        await ws_c.send_json_to({"type": "message.send", "ref": "c", "conversation_id": cb.pk, "client_msg_id": "c1",
                                 "kind": "text", "text": "unrelated chat"})  # fmt: skip
        while (frame := await ws_c.receive_json_from(timeout=2)).get("ref") != "c":
            pass
        assert frame["type"] == "message.send.result" and frame["created"]
    finally:
        await held.arelease()
    while (frame := await ws_a.receive_json_from(timeout=5)).get("ref") != "a":
        pass
    assert frame["type"] == "message.send.result" and frame["created"]  # once the lock was let go
    for ws in (ws_a, ws_b, ws_c):
        await ws.disconnect()


@pytest.mark.django_db
def test_a_client_msg_id_with_a_trailing_newline_is_refused(alice, bob):
    ab = direct(alice, bob)
    (outcome,) = services.message_send_many([_send(alice, ab, "abc\n")])
    assert isinstance(outcome, ApplicationError) and outcome.status_code == 400
