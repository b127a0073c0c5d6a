"""The consumer's dispatch loop keeps the contract of channels' ``await_many_dispatch``."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import StopConsumer

from superapp.core.consumers import _dispatch_loop


class Source:
    """A source of messages (the ASGI server's ``receive`` or the channel layer's)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.calls = 0
        self.cancelled = False

    async def __call__(self):
        self.calls += 1
        try:
            item = await self.queue.get()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if isinstance(item, BaseException):
            raise item
        return item


def run(scenario):
    return async_to_sync(scenario)()


def test_messages_are_dispatched_one_at_a_time_in_arrival_order():
    async def scenario():
        client, channel = Source(), Source()
        seen, busy = [], []

        async def dispatch(message):
            busy.append(1)
            assert len(busy) == 1  # never two dispatches at once
            await asyncio.sleep(0)
            seen.append(message["n"])
            busy.pop()
            if message["type"] == "websocket.disconnect":
                raise StopConsumer

        channel.queue.put_nowait({"type": "event.push", "n": 1})
        channel.queue.put_nowait({"type": "event.push", "n": 2})
        client.queue.put_nowait({"type": "websocket.receive", "n": 3})
        loop_task = asyncio.ensure_future(_dispatch_loop(client, channel, dispatch))
        await asyncio.sleep(0.01)
        channel.queue.put_nowait({"type": "event.push", "n": 4})
        client.queue.put_nowait({"type": "websocket.disconnect", "n": 5})
        with pytest.raises(StopConsumer):
            await asyncio.wait_for(loop_task, 2)
        return seen, client, channel

    seen, client, channel = run(scenario)
    assert sorted(seen) == [1, 2, 3, 4, 5]
    assert seen.index(1) < seen.index(2) < seen.index(4)  # one source's order is kept
    assert seen.index(3) < seen.index(5)
    assert channel.cancelled  # the channel layer's receive is cancelled on the way out (unsubscribes)
    assert client.calls == 2  # nothing asked of the server after the disconnect


def test_the_next_client_message_is_asked_for_only_after_the_previous_is_dispatched():
    async def scenario():
        client, channel = Source(), Source()
        release = asyncio.Event()
        calls_during_dispatch = []

        async def dispatch(message):
            if message["n"] == 1:
                await asyncio.sleep(0.02)
                calls_during_dispatch.append(client.calls)
                release.set()
            elif message["n"] == 2:
                raise StopConsumer

        client.queue.put_nowait({"type": "websocket.receive", "n": 1})
        client.queue.put_nowait({"type": "websocket.receive", "n": 2})
        with pytest.raises(StopConsumer):
            await asyncio.wait_for(_dispatch_loop(client, channel, dispatch), 2)
        return calls_during_dispatch, client.calls

    during, total = run(scenario)
    assert during == [1]  # the ASGI server's own queue holds frame 2 (its flow control still works)
    assert total == 2


@pytest.mark.parametrize("failing", ["client", "channel"])
def test_a_failing_source_ends_the_loop_with_its_error(failing):
    async def scenario():
        client, channel = Source(), Source()
        (client if failing == "client" else channel).queue.put_nowait(RuntimeError("boom"))

        async def dispatch(message):
            pass

        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(_dispatch_loop(client, channel, dispatch), 2)
        other = channel if failing == "client" else client
        return other.cancelled

    assert run(scenario)


def test_a_failing_dispatch_ends_the_loop_and_cancels_the_sources():
    async def scenario():
        client, channel = Source(), Source()
        channel.queue.put_nowait({"type": "event.push"})

        async def dispatch(message):
            raise ValueError("No handler")

        with pytest.raises(ValueError, match="No handler"):
            await asyncio.wait_for(_dispatch_loop(client, channel, dispatch), 2)
        return client.cancelled and channel.cancelled

    assert run(scenario)
