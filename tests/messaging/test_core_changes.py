"""The small core changes messaging needed: socket hooks, the one-statement head advance, the
concurrent doorbell (each user's frames still in order)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.db import transaction

from superapp.core import events as core_events
from superapp.core import realtime
from superapp.core.models import UserStream
from tests.core.test_realtime import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_failing_socket_hook_is_logged_and_the_socket_works(alice, monkeypatch, caplog):
    def broken(identity, channel_name):
        raise RuntimeError("hook bug")

    monkeypatch.setitem(realtime._socket_hooks, "connect", [*realtime._socket_hooks["connect"], broken])
    ws = await open_socket(alice)
    await ws.send_json_to({"type": "ping", "ref": 1})
    assert (await ws.receive_json_from())["type"] == "pong"
    assert "hook bug" in caplog.text or any("broken" in r.getMessage() for r in caplog.records)
    await ws.disconnect()


async def test_several_events_for_many_users_in_one_commit_arrive_in_cursor_order(alice, bob, carol):
    sockets = [await open_socket(u) for u in (alice, bob, carol)]

    def publish():
        with transaction.atomic():
            core_events.publish_many(
                specs=[core_events.EventSpec([alice.pk, bob.pk, carol.pk], "t.e", {"i": i}) for i in range(6)]
            )

    await sync_to_async(publish)()
    for ws in sockets:
        frames = [await ws.receive_json_from(timeout=5) for _ in range(6)]
        assert [f["cursor"] for f in frames] == [1, 2, 3, 4, 5, 6]
        assert [f["data"]["i"] for f in frames] == [0, 1, 2, 3, 4, 5]
        await ws.disconnect()


def test_heads_are_created_and_advanced_in_one_go(alice, bob):
    with transaction.atomic():
        core_events.publish(user_ids=[alice.pk], type="x", data={})
    with transaction.atomic():
        rows = core_events.publish_many(
            specs=[
                core_events.EventSpec([alice.pk, bob.pk], "y", {}),
                core_events.EventSpec([alice.pk], "z", {}),
            ]
        )
    assert [(r.user_id, r.seq) for r in rows] == [(alice.pk, 2), (bob.pk, 1), (alice.pk, 3)]
    assert dict(UserStream.objects.values_list("user_id", "last_seq")) == {alice.pk: 3, bob.pk: 1}
