"""The channel layer used in production, and one call to ring many groups at once.

:func:`group_send_many` sends ``[(group, message), ...]`` best effort and never raises. On
:class:`BatchPubSubChannelLayer` (production: ``CHANNEL_LAYER_BACKEND=pubsub``) that is **one**
Redis ``PUBLISH`` whatever the number of groups, made from the calling thread with a plain
(synchronous) Redis client: no event loop is started or borrowed. Every ASGI process that has a
socket open subscribes to one shared Pub/Sub channel, ``<prefix>__batch__``; on a batch it
hands each message to the sockets of that group *in this process* (channels-redis already
keeps, per process, which local channels joined which group: that is the registry of connected
consumers by user and session). A 500-member group message thus costs one round trip to Redis
and, in each server process, one decode and 499 in-memory queue puts, instead of 499
``PUBLISH`` round trips from the sender and 499 Redis messages received by each process.

Zulip routes each event to the one Tornado process that holds the user's queue
(``zerver/tornado/``); here every ASGI process gets every batch and keeps what concerns its own
sockets. That is cheapest with a few ASGI processes (one per core); with many, per-process
channels and a user -> process directory would cut the decoding each process does.

The sockets of the publishing process itself get the batch without Redis: the publishing
thread hands it to this process's event loops before sending the ``PUBLISH``, and they drop
the copy Redis sends back (:meth:`BatchPubSubChannelLayer.publish_batch`): one Redis round trip
and one decode less between a commit and the frames of the sockets it has itself.

Messages keep their order: one batch's in its order; batches of one process in the order they
were published (to its own sockets) or reached Redis (to the others'), and each socket reads its
own queue in order. Two processes' batches may reach a socket in either order (an earlier batch
of another process can still be on its way through Redis when this process's own is handed
over): the socket holds a stored event's frame that jumps ahead for a moment, waiting for the
ones before it (``EventConsumer.event_push``, ``REALTIME_REORDER_HOLD_MS``). The layer stays a
doorbell: Pub/Sub is at-most-once, a process that is not subscribed at the moment (starting,
reconnecting) misses the batch, and a device that sees a gap in cursors syncs. Any other layer (the in-memory one of the embedded default and
the tests, the list-based ``redis`` one) gets one ``group_send`` per group instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _consistent_hash, decode_hosts

from .frames import FrameWriter

logger = logging.getLogger(__name__)

GroupMessage = tuple[str, dict[str, Any]]
SEND_CONCURRENCY = 32  # group sends in flight on a layer without batches


def group_send_many(items: Sequence[GroupMessage]) -> None:
    """Send each ``message`` to its ``group``, in order; best effort, never raises.

    Call it from synchronous code (a service's on-commit callback, a frame handler's thread, a
    Celery task), never from the event loop's thread: it may block for one Redis round trip.
    """
    if not items:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, BatchPubSubChannelLayer):
        try:
            layer.publish_batch(items)
        except Exception:  # the stored events are what counts; devices will sync
            logger.warning("batch of %d group messages lost", len(items), exc_info=True)
        return
    async_to_sync(_send_each)(layer, items)


async def _send_each(layer: Any, items: Sequence[GroupMessage]) -> None:
    # A few at a time: each group_send may be a Redis round trip. One group's messages are sent
    # one after another by one task, so that they keep their order.
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group, message in items:
        by_group.setdefault(group, []).append(message)
    queue = list(by_group.items())

    async def worker() -> None:
        while queue:
            group, messages = queue.pop()
            for message in messages:
                try:
                    await layer.group_send(group, message)
                except Exception:
                    logger.warning("group message to %s lost", group, exc_info=True)

    await asyncio.gather(*(worker() for _ in range(min(SEND_CONCURRENCY, len(queue)))))


_LOCAL_IDS_MAX = 10_000  # batches delivered here whose copy from Redis has not come back yet


class _BatchSink:
    """Stands in the loop layer's ``channels`` map for the batch channel: channels-redis' reader
    calls ``put_nowait(raw)`` for every message on a subscribed channel, and this one fans the
    batch out to the local channels of each group. A batch this process published was handed
    to it before (:meth:`deliver_local`): its copy from Redis is dropped."""

    def __init__(self, layer: _BatchLoopLayer) -> None:
        self.layer = layer
        self.local_ids: dict[str, None] = {}  # (an ordered set: the oldest is evicted first)

    def put_nowait(self, raw: bytes) -> None:
        try:
            batch = self.layer.channel_layer.deserialize(raw)
            items = batch["items"]
        except Exception:
            logger.warning("undecodable batch dropped", exc_info=True)
            return
        local_id = batch.get("local")
        if local_id is not None and local_id in self.local_ids:
            del self.local_ids[local_id]  # delivered here already, when it was published
            return
        self._fan_out(items)

    def deliver_local(self, items: Sequence[Sequence[Any]], local_id: str) -> None:
        """A batch published by a thread of this process, on this loop (handed over before its
        ``PUBLISH`` was sent, so always before its copy from Redis can be read)."""
        if len(self.local_ids) >= _LOCAL_IDS_MAX:  # copies lost on the way (a Redis failure)
            del self.local_ids[next(iter(self.local_ids))]
        self.local_ids[local_id] = None
        self._fan_out(items)

    def _fan_out(self, items: Sequence[Sequence[Any]]) -> None:
        layer = self.layer
        prefix, groups, channels = f"{layer.prefix}__group__", layer.groups, layer.channels
        for group, message in items:
            members = groups.get(prefix + group)
            if not members:
                continue
            for channel in members:
                queue = channels.get(channel)
                if queue is not None:
                    # Already decoded: BatchPubSubChannelLayer.deserialize passes dicts through.
                    # Consumers only read messages, so the sockets of one group share it.
                    queue.put_nowait(message)


class _BatchLoopLayer(RedisPubSubLoopLayer):
    """channels-redis' per-event-loop Pub/Sub layer, also subscribed to the batch channel once a
    consumer of this loop has a channel (publish-only processes never subscribe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_channel = f"{self.prefix}__batch__"

    async def new_channel(self, prefix: str = "specific.") -> str:
        if self.batch_channel not in self.channels:  # first socket (or after a flush)
            self.channels[self.batch_channel] = _BatchSink(self)  # type: ignore[assignment]
            try:
                await self._get_shard(self.batch_channel).subscribe(self.batch_channel)
            except BaseException:
                self.channels.pop(self.batch_channel, None)
                raise
        return await super().new_channel(prefix)


class BatchPubSubChannelLayer(RedisPubSubChannelLayer):
    """channels-redis' Pub/Sub layer plus :meth:`publish_batch` (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_lock = threading.Lock()
        self._sync_client: Any = None
        self._local_prefix = f"{uuid.uuid4().hex}:"
        self._local_count = itertools.count()

    def _get_layer(self) -> _BatchLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            from channels_redis.utils import _wrap_close

            layer = _BatchLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer

    def deserialize(self, message: Any) -> Any:
        if isinstance(message, dict):  # delivered from a batch, decoded once for every socket
            return message
        return super().deserialize(message)

    def _batch_target(self) -> tuple[Any, str]:
        """The synchronous Redis client of the batch channel's shard, and the channel's name."""
        prefix = self._kwargs.get("prefix", "asgi")
        channel = f"{prefix}__batch__"
        with self._sync_lock:
            if self._sync_client is None:
                import redis

                hosts = decode_hosts(self._kwargs.get("hosts"))
                host = dict(hosts[_consistent_hash(channel, len(hosts))])
                # A doorbell must not hold a request's thread for the layer's 30 s read timeout.
                host["socket_timeout"] = min(host.get("socket_timeout") or 5, 5)
                host.setdefault("socket_connect_timeout", 5)
                if "address" in host:
                    address = host.pop("address")
                    self._sync_client = redis.Redis.from_url(address, **host)
                else:  # (host, port) pairs; a Sentinel setup would need its own client here
                    self._sync_client = redis.Redis(**host)
            return self._sync_client, channel

    def publish_batch(self, items: Sequence[GroupMessage]) -> None:
        """One ``PUBLISH`` of ``[(group, message), ...]`` to every subscribed server process.
        Synchronous and thread-safe (redis-py's pool); raises on a Redis error.

        The frames are written here, in the publishing thread, once: an ``event.push`` travels as
        ``{"type": "event.push", "text": <the frame's JSON text>}``, which each socket sends as it
        is (:mod:`superapp.core.frames`; the envelopes of one group message share the JSON of
        their data). The server processes then do no JSON work per socket, and decode a batch of
        strings instead of nested dicts.

        The sockets of this process get the batch straight from here, without the way through
        Redis (a round trip, then the subscriber's read and decode): it is handed to each event
        loop of this process that has sockets, before the ``PUBLISH`` is sent, so before the
        copy that Redis sends back, which those loops then drop (the batch carries an id for
        that). Other processes get it from Redis as before."""
        client, channel = self._batch_target()
        wire = _wire_items(items)
        batch: dict[str, Any] = {"items": wire}
        loops = self._loops_with_sockets()
        if loops:
            batch["local"] = local_id = f"{self._local_prefix}{os.getpid()}:{next(self._local_count)}"
        payload = self.serialize(batch)  # (first: a batch that cannot be sent goes nowhere)
        for loop in loops:
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                loop.call_soon_threadsafe(self._deliver_local, loop, wire, local_id)
        client.publish(channel, payload)

    def _loops_with_sockets(self) -> list[asyncio.AbstractEventLoop]:
        """This process's event loops whose layer has a batch sink (a socket joined a group)."""
        return [
            loop
            for loop, layer in list(self._layers.items())
            if isinstance(layer.channels.get(layer.batch_channel), _BatchSink) and not loop.is_closed()
        ]

    def _deliver_local(self, loop: asyncio.AbstractEventLoop, wire: list[list[Any]], local_id: str) -> None:
        """On ``loop``: hand the batch to its layer's sink as it is now (after a flush, the new
        one, which then drops the copy from Redis; none: the copy, if it comes, is delivered)."""
        layer = self._layers.get(loop)
        sink = layer.channels.get(layer.batch_channel) if layer is not None else None
        if isinstance(sink, _BatchSink):
            sink.deliver_local(wire, local_id)


def _wire_items(items: Sequence[GroupMessage]) -> list[list[Any]]:
    writer = FrameWriter()
    out: list[list[Any]] = []
    for group, message in items:
        if message.get("type") == "event.push" and "event" in message and len(message) == 2:
            event = message["event"]
            message = {"type": "event.push", "text": writer.envelope(event)}
            cursor = event.get("cursor") if type(event) is dict else None
            if type(cursor) is int:  # a stored event's: the socket keeps these in order
                message["cursor"] = cursor
        out.append([group, message])
    return out
