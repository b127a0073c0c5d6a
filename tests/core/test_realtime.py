"""The /ws/ socket through the real ASGI app: auth, event envelopes, sync, bad frames."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async as sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from rest_framework_simplejwt.tokens import AccessToken

from accounts import services
from superapp.asgi import application
from superapp.core import events
from superapp.core.models import Event
from tests.conftest import login_tokens

pytestmark = [pytest.mark.django_db(transaction=True)]


async def connect(subprotocols=None, path="/ws/"):
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols or [])
    connected, subprotocol = await communicator.connect(timeout=5)
    return communicator, connected, subprotocol


async def open_socket(user):
    tokens = await sync_to_async(login_tokens)(user)
    communicator, connected, subprotocol = await connect(["superapp.v1", f"superapp.auth.{tokens['access']}"])
    assert connected and subprotocol == "superapp.v1"
    communicator.tokens = tokens
    return communicator


async def expect_close(communicator, code):
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["error"]["code"]
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": code}


async def next_event(communicator, type_, timeout=5):
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame.get("type") == type_:
            return frame


async def test_connect_with_token_subprotocol(alice):
    ws = await open_socket(alice)
    await ws.send_json_to({"type": "ping", "ref": "p1"})
    assert await ws.receive_json_from() == {"type": "pong", "cursor": 0, "ref": "p1"}
    await ws.disconnect()


async def test_no_credentials_closes_4001():
    ws, connected, _ = await connect(["superapp.v1"])
    assert connected
    await expect_close(ws, 4001)


async def test_bad_token_closes_4001():
    ws, _, _ = await connect(["superapp.v1", "superapp.auth.not-a-token"])
    await expect_close(ws, 4001)


async def test_expired_token_closes_4002(alice):
    tokens = await sync_to_async(login_tokens)(alice)
    token = AccessToken(tokens["access"])
    token.set_exp(lifetime=-__import__("datetime").timedelta(seconds=1))
    ws, _, _ = await connect(["superapp.v1", f"superapp.auth.{token}"])
    await expect_close(ws, 4002)


async def test_revoked_session_cannot_connect_and_open_socket_is_closed(alice):
    ws = await open_socket(alice)
    await sync_to_async(services.session_revoke)(user=alice, session_id=ws.tokens["session_id"])
    # The stored event first (every device of alice learns of it), then the close.
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "account.session.revoked"
    assert frame["data"] == {"session_id": ws.tokens["session_id"], "reason": "revoked"}
    await expect_close(ws, 4003)
    again, _, _ = await connect(["superapp.v1", f"superapp.auth.{ws.tokens['access']}"])
    await expect_close(again, 4003)


async def test_ticket_in_subprotocol_or_query_string_is_single_use(alice):
    tokens = await sync_to_async(login_tokens)(alice)

    def ticket():
        return services.ws_ticket_create(user=alice, session_id=tokens["session_id"])

    t1 = await sync_to_async(ticket)()
    ws, connected, subprotocol = await connect(["superapp.v1", f"superapp.ticket.{t1}"])
    assert connected and subprotocol == "superapp.v1"
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    await ws.disconnect()
    reused, _, _ = await connect(["superapp.v1", f"superapp.ticket.{t1}"])
    await expect_close(reused, 4001)

    t2 = await sync_to_async(ticket)()
    ws, connected, _ = await connect(path=f"/ws/?ticket={t2}")
    assert connected
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    await ws.disconnect()


async def test_friend_request_reaches_every_device_as_an_envelope(alice, bob):
    phone, laptop = await open_socket(alice), await open_socket(alice)
    outcome = await sync_to_async(services.friend_request_send)(from_user=bob, to_user_id=alice.pk, note="hi")
    for device in (phone, laptop):
        frame = await next_event(device, "contact.request.received")
        assert set(frame) == {"type", "cursor", "data"}
        assert frame["cursor"] == 1
        assert frame["data"]["request"]["id"] == outcome.request.pk
        assert frame["data"]["request"]["note"] == "hi"
        assert frame["data"]["request"]["from_user"]["handle"] == "bob"
    await phone.disconnect()
    await laptop.disconnect()


async def test_acceptance_reaches_the_requester(alice, bob):
    bob_ws = await open_socket(bob)
    outcome = await sync_to_async(services.friend_request_send)(from_user=bob, to_user_id=alice.pk)
    await next_event(bob_ws, "contact.request.sent")
    await sync_to_async(services.friend_request_accept)(user=alice, request_id=outcome.request.pk)
    accepted = await next_event(bob_ws, "contact.request.accepted")
    assert accepted["data"]["request"]["status"] == "accepted"
    added = await next_event(bob_ws, "contact.friend.added")
    assert added["data"]["friend"]["handle"] == "alice"
    assert added["cursor"] == accepted["cursor"] + 1
    await bob_ws.disconnect()


async def test_sync_frame_returns_what_was_missed_and_bad_frames_keep_the_socket(alice, bob):
    outcome = await sync_to_async(services.friend_request_send)(from_user=bob, to_user_id=alice.pk)
    await sync_to_async(services.friend_request_accept)(user=alice, request_id=outcome.request.pk)
    ws = await open_socket(alice)
    await ws.send_json_to({"type": "sync", "since": 0, "ref": "s1"})
    result = await ws.receive_json_from()
    assert result["type"] == "sync.result" and result["ref"] == "s1"
    assert [e["cursor"] for e in result["events"]] == [1, 2]
    assert [e["type"] for e in result["events"]] == ["contact.request.received", "contact.friend.added"]
    assert result["has_more"] is False and result["cursor"] == 2 == result["latest"]

    for bad, code in [
        ("not json", "bad_frame"),
        (json.dumps([1, 2]), "bad_frame"),
        (json.dumps({"no": "type"}), "bad_frame"),
        (json.dumps({"type": "launch.rockets"}), "unknown_frame"),
        (json.dumps({"type": "sync", "since": -1}), "invalid"),
        (json.dumps({"type": "sync", "since": "3"}), "invalid"),
        (json.dumps({"type": "sync", "since": 99}), "cursor_invalid"),
        ("x" * 70000, "bad_frame"),
    ]:
        await ws.send_to(text_data=bad)
        frame = await ws.receive_json_from()
        assert frame["type"] == "error" and frame["error"]["code"] == code, (bad[:40], frame)
    await ws.send_json_to({"type": "ping", "ref": 7})
    assert await ws.receive_json_from() == {"type": "pong", "cursor": 2, "ref": 7}
    await ws.disconnect()


async def test_rolled_back_write_stores_and_pushes_nothing(alice):
    ws = await open_socket(alice)

    def publish_then_fail():
        with pytest.raises(RuntimeError), transaction.atomic():
            events.publish(user_ids=[alice.pk], type="test.event", data={"x": 1})
            raise RuntimeError("rolled back")

    await sync_to_async(publish_then_fail)()
    assert await ws.receive_nothing(timeout=0.3)
    assert not await sync_to_async(Event.objects.exists)()

    def publish_ok():
        with transaction.atomic():
            events.publish(user_ids=[alice.pk], type="test.event", data={"x": 2})

    await sync_to_async(publish_ok)()
    frame = await ws.receive_json_from()
    assert frame == {"type": "test.event", "cursor": 1, "data": {"x": 2}}
    await ws.disconnect()


async def test_profile_change_reaches_friends_not_strangers(alice, bob, carol):
    from tests.conftest import befriend

    await sync_to_async(befriend)(alice, bob)
    alice_ws, carol_ws = await open_socket(alice), await open_socket(carol)
    await sync_to_async(services.profile_update)(user=bob, changes={"display_name": "Bobby"})
    frame = await next_event(alice_ws, "profile.updated")
    assert frame["data"]["user"] == {
        "id": bob.pk,
        "handle": "bob",
        "display_name": "Bobby",
        "avatar_url": None,
        "avatar_thumb_url": None,
        "region": "",
        "bio": "",
    }
    assert await carol_ws.receive_nothing(timeout=0.3)
    await alice_ws.disconnect()
    await carol_ws.disconnect()


async def test_a_dropped_push_is_recovered_by_sync(alice, bob, monkeypatch):
    """The channel layer may drop frames; the stored stream still has them."""
    ws = await open_socket(alice)
    monkeypatch.setattr(events, "push_envelopes", lambda envelopes: None)  # every doorbell lost
    await sync_to_async(services.friend_request_send)(from_user=bob, to_user_id=alice.pk)
    assert await ws.receive_nothing(timeout=0.3)
    await ws.send_json_to({"type": "sync", "since": 0})
    result = await ws.receive_json_from()
    assert [e["type"] for e in result["events"]] == ["contact.request.received"]
    await ws.disconnect()


async def test_many_events_arrive_in_cursor_order(alice):
    ws = await open_socket(alice)

    def publish(n):
        for i in range(n):
            with transaction.atomic():
                events.publish(user_ids=[alice.pk], type="test.event", data={"i": i})

    await sync_to_async(publish)(50)
    cursors = [(await ws.receive_json_from())["cursor"] for _ in range(50)]
    assert cursors == list(range(1, 51))
    await asyncio.sleep(0)
    await ws.disconnect()


# --- a socket keeps stored events in cursor order: two processes' doorbells may reach its
# process in either order (its own come straight, the others' through Redis) -----------------
async def _ring(user, *cursors):
    """Doorbells for stored events of ``user``, straight to the channel layer, in this order."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    for cursor in cursors:
        envelope = {"type": "test.event", "cursor": cursor, "data": {"n": cursor}}
        await layer.group_send(events.user_group(user.pk), {"type": "event.push", "event": envelope})


async def test_a_frame_that_jumps_ahead_waits_for_the_ones_before_it(alice, settings):
    settings.REALTIME_REORDER_HOLD_MS = 60_000  # (held until the missing ones come)
    ws = await open_socket(alice)
    await _ring(alice, 1, 3, 4, 2, 5, 4)
    frames = [await ws.receive_json_from(timeout=5) for _ in range(6)]
    # 3 and 4 waited for 2; the repeated 4 (stale) goes out as it is, the device ignores it
    assert [f["cursor"] for f in frames] == [1, 2, 3, 4, 5, 4]
    # ephemeral frames (no cursor) are never held
    await _ring(alice, 7)  # 6 is missing: held
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(
        events.user_group(alice.pk), {"type": "event.push", "event": {"type": "typing", "data": {}}}
    )
    assert (await ws.receive_json_from(timeout=5))["type"] == "typing"
    await _ring(alice, 6)
    assert [(await ws.receive_json_from(timeout=5))["cursor"] for _ in range(2)] == [6, 7]
    await ws.disconnect()


async def test_held_frames_go_out_in_order_when_the_missing_one_never_comes(alice, settings):
    settings.REALTIME_REORDER_HOLD_MS = 50
    ws = await open_socket(alice)
    await _ring(alice, 1, 4, 3)  # 2 was dropped on the way (Pub/Sub is at-most-once)
    frames = [await ws.receive_json_from(timeout=5) for _ in range(3)]
    assert [f["cursor"] for f in frames] == [1, 3, 4]  # in order, after the hold; the device syncs
    await _ring(alice, 5)  # and the socket goes on from the highest sent
    assert (await ws.receive_json_from(timeout=5))["cursor"] == 5
    await ws.disconnect()


async def test_without_a_hold_frames_go_out_as_they_come(alice, settings):
    settings.REALTIME_REORDER_HOLD_MS = 0
    ws = await open_socket(alice)
    await _ring(alice, 1, 3, 2)
    assert [(await ws.receive_json_from(timeout=5))["cursor"] for _ in range(3)] == [1, 3, 2]
    await ws.disconnect()


async def _outputs(ws, wait=0.3):
    """What the app sent within ``wait`` seconds (read without asgiref's cancel-on-timeout)."""
    await asyncio.sleep(wait)
    out = []
    while not ws.output_queue.empty():
        out.append(ws.output_queue.get_nowait())
    return out


def _summary(outputs):
    """Each output as its cursor, its frame type, or the ASGI message type (a close)."""
    out = []
    for message in outputs:
        if message["type"] == "websocket.send":
            frame = json.loads(message["text"])
            out.append(frame.get("cursor", frame["type"]))
        else:
            out.append(message["type"])
    return out


async def test_the_production_layers_frames_are_held_in_order_too(alice, settings):
    """Through the Pub/Sub batch layer (the cursor travels beside the pre-written frame text)."""
    from channels.layers import channel_layers

    from superapp.core.layers import BatchPubSubChannelLayer, group_send_many

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "superapp.core.layers.BatchPubSubChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"test-hold-{alice.pk}-{id(settings)}"},
        }
    }
    channel_layers.backends.pop("default", None)
    settings.REALTIME_REORDER_HOLD_MS = 60_000
    try:
        from channels.layers import get_channel_layer

        assert isinstance(get_channel_layer(), BatchPubSubChannelLayer)
        ws = await open_socket(alice)
        loop = asyncio.get_running_loop()
        for cursor in (1, 3, 2):
            envelope = {"type": "test.event", "cursor": cursor, "data": {"n": cursor}}
            push = [(events.user_group(alice.pk), {"type": "event.push", "event": envelope})]
            await loop.run_in_executor(None, group_send_many, push)
        assert [(await ws.receive_json_from(timeout=5))["cursor"] for _ in range(3)] == [1, 2, 3]
        await ws.disconnect()
    finally:
        channel_layers.backends.pop("default", None)


async def test_a_revoked_session_gets_its_held_frames_then_the_close_and_nothing_after(alice, settings):
    from channels.layers import get_channel_layer

    settings.REALTIME_REORDER_HOLD_MS = 60_000
    ws = await open_socket(alice)
    await _ring(alice, 1, 3)  # 2 is lost: 3 is held
    await get_channel_layer().group_send(
        events.session_group(ws.tokens["session_id"]), {"type": "session.revoked"}
    )
    await _ring(alice, 4)  # queued behind the revocation: never sent on the closed socket
    out = []
    while not out or out[-1]["type"] != "websocket.close":
        out.append(await ws.receive_output(timeout=5))
    out += await _outputs(ws)
    assert _summary(out) == [1, 3, "error", "websocket.close"]
    await ws.send_input({"type": "websocket.disconnect", "code": 4003})


async def test_a_socket_closed_with_held_frames_leaves_no_timer(alice, settings):
    from superapp.core.consumers import EventConsumer

    settings.REALTIME_REORDER_HOLD_MS = 60_000
    timers = []
    real = EventConsumer._in_order

    def watching(self, cursor, text):
        out = real(self, cursor, text)
        if self._hold_timer is not None:
            timers.append(self._hold_timer)
        return out

    EventConsumer._in_order = watching
    try:
        ws = await open_socket(alice)
        await _ring(alice, 1, 3)
        assert (await ws.receive_json_from(timeout=5))["cursor"] == 1
        await ws.disconnect()
    finally:
        EventConsumer._in_order = real
    assert timers and all(t.cancelled() for t in timers)
