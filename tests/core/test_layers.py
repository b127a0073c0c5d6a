"""superapp.core.layers: one PUBLISH per batch on the production layer, per-group sends elsewhere."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings as django_settings

from superapp.core import layers
from superapp.core.layers import BatchPubSubChannelLayer, group_send_many


@pytest.fixture
def batch_layer(settings):
    """The production layer on the test Redis, under a prefix of this test's own (Pub/Sub
    channels are shared by every Redis database)."""
    prefix = f"test-layers-{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "superapp.core.layers.BatchPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": django_settings.REDIS_URL, "socket_timeout": 30}],
                "prefix": prefix,
            },
        }
    }
    channel_layers.backends.pop("default", None)
    layer = get_channel_layer()
    assert isinstance(layer, BatchPubSubChannelLayer)
    yield layer
    channel_layers.backends.pop("default", None)


def _from_another_thread(items):
    """As a service's on-commit callback does: plain synchronous code, outside the event loop."""
    thread = threading.Thread(target=group_send_many, args=(items,))
    thread.start()
    thread.join()


async def _drain(layer, channel, timeout=0.3):
    out = []
    while True:
        try:
            out.append(await asyncio.wait_for(layer.receive(channel), timeout))
        except TimeoutError:
            return out


def test_one_publish_reaches_each_groups_local_channels_in_order(batch_layer, monkeypatch):
    publishes = []
    real = BatchPubSubChannelLayer.publish_batch

    def counting(self, items):
        publishes.append(len(items))
        real(self, items)

    monkeypatch.setattr(BatchPubSubChannelLayer, "publish_batch", counting)

    async def scenario():
        phone, laptop, other, stranger = [await batch_layer.new_channel() for _ in range(4)]
        await batch_layer.group_add("user.1", phone)
        await batch_layer.group_add("user.1", laptop)
        await batch_layer.group_add("user.2", other)
        await batch_layer.group_add("session.s1", laptop)
        items = [("user.1", {"type": "event.push", "event": _envelope(n)}) for n in (1, 2, 3)]
        items += [("user.2", {"type": "event.push", "event": _envelope(7)})]
        items += [("user.404", {"type": "event.push", "event": _envelope(1)})]  # nobody here
        items += [("session.s1", {"type": "session.revoked"})]
        await asyncio.get_running_loop().run_in_executor(None, _from_another_thread, items)
        return (
            await _drain(batch_layer, phone),
            await _drain(batch_layer, laptop),
            await _drain(batch_layer, other),
            await _drain(batch_layer, stranger),
        )

    phone, laptop, other, stranger = async_to_sync(scenario)()
    assert publishes == [6]  # one PUBLISH for the whole batch
    # Event pushes arrive as the frame's JSON text, written once by the publisher; the sockets
    # send it as it is. Other messages arrive as they were sent.
    cursors = [{"type": "event.push", "event": _envelope(n)} for n in (1, 2, 3)]
    assert _decoded(phone) == cursors
    assert _decoded(laptop) == [*cursors, {"type": "session.revoked"}]
    assert _decoded(other) == [{"type": "event.push", "event": _envelope(7)}]
    assert stranger == []
    # with the cursor beside the text, for the socket's ordering (consumers.EventConsumer)
    assert all(set(m) == {"type", "text", "cursor"} for m in phone + other)
    assert [m["cursor"] for m in phone] == [1, 2, 3]


def _envelope(cursor):
    return {
        "type": "message.new",
        "cursor": cursor,
        "data": {"text": "héllo", "n": cursor, "nested": [1, None]},
    }


def _decoded(messages):
    """The messages as the consumer sees them, with each pre-written frame text parsed back."""
    return [{"type": m["type"], "event": json.loads(m["text"])} if "text" in m else m for m in messages]


def test_a_redis_failure_is_logged_never_raised(batch_layer, monkeypatch, caplog):
    def broken(self, items):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(BatchPubSubChannelLayer, "publish_batch", broken)
    group_send_many([("user.1", {"type": "event.push", "event": {}})])  # no exception
    assert "lost" in caplog.text


def _another_process(layer):
    """A second instance of the production layer on the same Redis and prefix: as another ASGI
    process is (it shares nothing with this one but Redis)."""
    return BatchPubSubChannelLayer(**layer._kwargs)


def test_own_sockets_get_a_batch_once_straight_and_other_processes_from_redis(batch_layer, monkeypatch):
    other = _another_process(batch_layer)
    sent = []
    real = BatchPubSubChannelLayer.serialize

    def recording(self, message):
        if isinstance(message, dict) and "items" in message:
            sent.append(message)
        return real(self, message)

    monkeypatch.setattr(BatchPubSubChannelLayer, "serialize", recording)

    async def scenario():
        mine = await batch_layer.new_channel()
        theirs = await other.new_channel()
        await batch_layer.group_add("user.1", mine)
        await other.group_add("user.1", theirs)
        items = [("user.1", {"type": "event.push", "event": _envelope(n)}) for n in (1, 2)]
        await asyncio.get_running_loop().run_in_executor(None, _from_another_thread, items)
        got = await _drain(batch_layer, mine, 0.5), await _drain(other, theirs, 0.5)
        sink = batch_layer._get_layer().channels[batch_layer._get_layer().batch_channel]
        await other.flush()
        return got, sink.local_ids

    (mine, theirs), pending = async_to_sync(scenario)()
    cursors = [{"type": "event.push", "event": _envelope(n)} for n in (1, 2)]
    assert _decoded(mine) == cursors  # once: the copy from Redis was dropped
    assert _decoded(theirs) == cursors  # the other process: from Redis
    assert len(sent) == 1 and sent[0]["local"]  # the published batch said it was delivered here
    assert pending == {}  # and its copy came back and was recognised


def test_own_sockets_get_a_batch_even_when_redis_fails(batch_layer, monkeypatch, caplog):
    other = _another_process(batch_layer)

    async def scenario():
        mine = await batch_layer.new_channel()
        theirs = await other.new_channel()
        await batch_layer.group_add("user.1", mine)
        await other.group_add("user.1", theirs)
        client, _ = batch_layer._batch_target()

        def down(*args, **kwargs):
            raise ConnectionError("redis is down")

        monkeypatch.setattr(client, "publish", down)
        items = [("user.1", {"type": "event.push", "event": _envelope(5)})]
        await asyncio.get_running_loop().run_in_executor(None, _from_another_thread, items)
        got = await _drain(batch_layer, mine), await _drain(other, theirs)
        await other.flush()
        return got

    mine, theirs = async_to_sync(scenario)()
    assert _decoded(mine) == [{"type": "event.push", "event": _envelope(5)}]
    assert theirs == []  # lost for the others (they sync on their next gap), and logged
    assert "lost" in caplog.text


def test_other_layers_get_one_group_send_per_group_in_order():
    """The in-memory layer (embedded default, most tests): plain group sends."""
    layer = get_channel_layer()
    assert not isinstance(layer, BatchPubSubChannelLayer)

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add("user.9", channel)
        await asyncio.get_running_loop().run_in_executor(
            None, group_send_many, [("user.9", {"type": "event.push", "n": n}) for n in range(40)]
        )
        got = [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(40)]
        await layer.group_discard("user.9", channel)
        return got

    assert [m["n"] for m in async_to_sync(scenario)()] == list(range(40))
    assert layers.SEND_CONCURRENCY > 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [("redis://127.0.0.1:6379/0", "superapp"), ("redis://127.0.0.1:6379/6", "superapp.db6")],
)
def test_the_default_channel_prefix_names_the_redis_database(url, expected, tmp_path):
    from tests.core.test_settings_and_health import run_python

    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CHANNEL_LAYERS['default']['CONFIG']['prefix'])"
    )
    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1/x", "REDIS_URL": url, "SECRET_KEY": "k" * 50}
    result = run_python(probe, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == expected


# --- local delivery's edge cases (found by a review) ----------------------------------------
def _cursors(messages):
    return [json.loads(m["text"])["cursor"] for m in messages if "text" in m]


def _push(cursor):
    return ("user.1", {"type": "event.push", "event": _envelope(cursor)})


def test_a_full_set_of_local_ids_forgets_the_oldest_not_a_batch_in_flight(batch_layer, monkeypatch):
    monkeypatch.setattr(layers, "_LOCAL_IDS_MAX", 3)

    async def scenario():
        mine = await batch_layer.new_channel()
        await batch_layer.group_add("user.1", mine)
        layer = batch_layer._get_layer()
        sink = layer.channels[layer.batch_channel]
        sink.local_ids.update({"lost:1": None, "lost:2": None})  # copies that never came back

        def publishers():
            batch_layer.publish_batch([_push(1)])
            batch_layer.publish_batch([_push(2)])

        # Both handed over while the loop is blocked, before either copy can be read.
        thread = threading.Thread(target=publishers)
        thread.start()
        thread.join()
        return await _drain(batch_layer, mine)

    assert _cursors(async_to_sync(scenario)()) == [1, 2]  # once each


def test_a_flush_between_the_listing_and_the_handover_delivers_once(batch_layer, monkeypatch):
    listed, go_on = threading.Event(), threading.Event()
    real = BatchPubSubChannelLayer._loops_with_sockets

    def slow(self):
        out = real(self)
        listed.set()
        go_on.wait(5)
        return out

    monkeypatch.setattr(BatchPubSubChannelLayer, "_loops_with_sockets", slow)

    async def scenario():
        first = await batch_layer.new_channel()
        await batch_layer.group_add("user.1", first)
        loop = asyncio.get_running_loop()
        publishing = loop.run_in_executor(None, batch_layer.publish_batch, [_push(1)])
        await loop.run_in_executor(None, listed.wait)
        await batch_layer.flush()  # the loop's layer starts afresh; a socket opens again
        again = await batch_layer.new_channel()
        await batch_layer.group_add("user.1", again)
        go_on.set()
        await publishing
        return await _drain(batch_layer, again)

    assert _cursors(async_to_sync(scenario)()) == [1]


def test_a_batch_that_cannot_be_encoded_goes_nowhere(batch_layer, caplog):
    class Odd:
        pass

    async def scenario():
        mine = await batch_layer.new_channel()
        await batch_layer.group_add("user.1", mine)
        await asyncio.get_running_loop().run_in_executor(
            None, group_send_many, [("user.1", {"type": "session.revoked", "odd": Odd()})]
        )
        return await _drain(batch_layer, mine)

    assert async_to_sync(scenario)() == []  # not to this process's sockets alone either
    assert "lost" in caplog.text
