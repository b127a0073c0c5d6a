"""The one WebSocket consumer, at ``/ws/``.

Authentication (never a token in the logged URL):

* subprotocols ``superapp.v1, superapp.auth.<access JWT>``, answered with ``superapp.v1``; or
* a single-use 60-second ticket from ``POST /api/v1/realtime/ticket``, as the subprotocol
  ``superapp.ticket.<ticket>`` or the query string ``?ticket=``.

A socket that fails is accepted and closed at once with a code (4001 unauthenticated, 4002
expired, 4003 revoked), so that browsers can read the code. Once open, the socket joins
``user.<id>`` (every device of the user) and ``session.<sid>`` (to be closed on logout).

Server frames: stored events as envelopes ``{"type", "cursor", "data"}``; replies to client
frames (``{"type": "<x>.result" | "pong" | "error", "ref": <client ref>, ...}``).
Client frames: ``{"type": "...", "ref": "...", ...}``, dispatched through
:mod:`superapp.core.realtime`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import get_supported_language_variant, parse_accept_lang_header

from . import frames, realtime
from .errors import ApplicationError, error_body
from .events import session_group, user_group
from .metrics import open_websockets, websocket_connections

logger = logging.getLogger("superapp.ws")

PROTOCOL = "superapp.v1"
MAX_FRAME_BYTES = 64 * 1024


def socket_language(scope: dict[str, Any]) -> str:
    """The language of a socket's messages, from its handshake's Accept-Language header."""
    header = dict(scope.get("headers") or []).get(b"accept-language", b"").decode("latin-1")
    for code, _q in parse_accept_lang_header(header[:256]):
        if code == "*":
            break
        try:
            return get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class EventConsumer(AsyncWebsocketConsumer):
    identity: realtime.SocketIdentity | None = None
    language: str = settings.LANGUAGE_CODE

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.language = socket_language(self.scope)
        with translation.override(self.language):
            await super().websocket_connect(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        with translation.override(self.language):
            await super().websocket_receive(message)

    async def connect(self) -> None:
        offered = list(self.scope.get("subprotocols") or [])
        subprotocol = PROTOCOL if PROTOCOL in offered else None
        authenticate = import_string(settings.WS_AUTHENTICATOR)
        try:
            self.identity = await database_sync_to_async(authenticate)(self.scope)
        except realtime.SocketAuthError as exc:
            websocket_connections.labels(outcome="refused").inc()
            await self.accept(subprotocol)
            await self.send_json({"type": "error", **error_body("not_authenticated", exc.reason)})
            await self.close(code=exc.close_code)
            return
        self.groups = [user_group(self.identity.user_id), session_group(self.identity.session_id)]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept(subprotocol)
        open_websockets.inc()
        websocket_connections.labels(outcome="accepted").inc()
        logger.info("ws connect user=%s session=%s", self.identity.user_id, self.identity.session_id)
        if realtime.has_socket_hooks("connect"):
            await database_sync_to_async(realtime.run_socket_hooks)(
                "connect", self.identity, self.channel_name
            )

    async def disconnect(self, code: int) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self.identity is None:
            return
        open_websockets.dec()
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        logger.info("ws disconnect user=%s code=%s", self.identity.user_id, code)
        if realtime.has_socket_hooks("disconnect"):
            await database_sync_to_async(realtime.run_socket_hooks)(
                "disconnect", self.identity, self.channel_name
            )

    # --- frames from the client ------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.identity is None:
            return
        ref = None
        try:
            if text_data is None or len(text_data) > MAX_FRAME_BYTES:
                raise ApplicationError(_("Frames must be JSON text of at most 64 KiB."), code="bad_frame")
            try:
                frame = json.loads(text_data)
            except ValueError:
                raise ApplicationError(_("The frame is not valid JSON."), code="bad_frame") from None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise ApplicationError(_("A frame is a JSON object with a 'type'."), code="bad_frame")
            ref = frame.get("ref")
            handler = realtime.get_frame_handler(frame["type"])
            if handler is None:
                raise ApplicationError(
                    _("Unknown frame type '%(type)s'.") % {"type": frame["type"][:64]},
                    code="unknown_frame",
                )
            batch = (
                realtime.get_frame_batch_handler(frame["type"]) if settings.REALTIME_FRAME_BATCHING else None
            )
            if batch is not None:
                call = realtime.FrameCall(
                    user_id=self.identity.user_id,
                    session_id=self.identity.session_id,
                    frame=frame,
                    language=self.language,
                )
                reply = await FrameBatcher.of(frame["type"], batch).submit(call)
                if reply is realtime.NOT_BATCHED:  # the batch left it to its own handler
                    reply = await database_sync_to_async(self._run_handler, thread_sensitive=False)(
                        handler, frame
                    )
            else:
                # Not thread-sensitive: handlers of different sockets run side by side in the
                # executor's threads (each borrows a pooled connection and closes it after), instead
                # of queueing behind one another on the single thread-sensitive thread of the
                # process. One socket's frames still run one at a time, in order (this method
                # awaits the handler).
                reply = await database_sync_to_async(self._run_handler, thread_sensitive=False)(
                    handler, frame
                )
        except ApplicationError as exc:
            reply = {"type": "error", **exc.as_dict()}
        except Exception:
            logger.exception("ws frame failed")
            reply = {"type": "error", **error_body("server_error", _("Something went wrong."))}
        if ref is not None:
            reply = {**reply, "ref": ref}
        await self.send_json(reply)

    def _run_handler(self, handler: realtime.FrameHandler, frame: dict[str, Any]) -> dict[str, Any]:
        """Runs in a worker thread: the language is per thread, so activate it here."""
        assert self.identity is not None
        with translation.override(self.language):
            return handler(user_id=self.identity.user_id, session_id=self.identity.session_id, frame=frame)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__`` with :func:`_dispatch_loop` for its loop."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is None:
            await super().__call__(scope, receive, send)
            return
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await _dispatch_loop(receive, self.channel_receive, self.dispatch, self._set_inject)

    def _set_inject(self, put: Callable[[int, Any], None]) -> None:
        self._inject = put

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' ``dispatch`` without its ``close_old_connections`` hop before every message.

        Channels runs ``close_old_connections`` in the thread-sensitive executor before each
        handler: one thread hop per message, all of them queued on one thread, which was most of
        this process's CPU when a 500-member group's message rang 499 local sockets (py-spy).
        Nothing here touches the database on the event loop: every query runs inside
        ``database_sync_to_async``, which closes old connections itself, before and after.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- messages from the channel layer -----------------------------------------------------
    # A stored event's frame whose cursor jumps past the next one this socket expects is held
    # back for up to REALTIME_REORDER_HOLD_MS, waiting for the ones before it: two processes'
    # doorbells may reach this one in either order (this process's own come straight, the
    # others' through Redis), and a device that sees a jump syncs. If the missing frame does
    # not come (Pub/Sub dropped it), the held ones go out in order at the deadline and the
    # device syncs as before. Ephemeral frames (no cursor) and late ones go out at once.
    _sent_cursor: int | None = None  # the highest cursor sent on this socket
    _held: dict[int, str] | None = None  # cursor -> frame text, held back
    _hold_timer: asyncio.TimerHandle | None = None
    _inject: Callable[[int, Any], None] | None = None  # puts a message into the dispatch loop
    _closed = False  # closed by the server (session.revoked): channel messages are dropped

    async def event_push(self, message: dict[str, Any]) -> None:
        if self._closed:  # (queued behind a session.revoked that closed the socket)
            return
        # From a batch (superapp.core.layers) the frame's JSON was written once, by the publisher.
        text = message.get("text")
        if text is None:
            event = message["event"]
            text = frames.dumps(event)
            cursor = event.get("cursor") if type(event) is dict else None
        else:
            cursor = message.get("cursor")
        if type(cursor) is not int:
            await self.send(text_data=text)
            return
        for out in self._in_order(cursor, text):
            await self.send(text_data=out)

    def _in_order(self, cursor: int, text: str) -> list[str]:
        """The frames to send now, in order, given a stored event's frame (state updated here,
        before any send, so that a send's await never lets another path reorder them)."""
        last = self._sent_cursor
        if (
            last is not None
            and cursor > last + 1
            and settings.REALTIME_REORDER_HOLD_MS > 0
            and self._inject is not None  # (the dispatch loop that releases them is running)
        ):
            if self._held is None:
                self._held = {}
            self._held[cursor] = text
            if self._hold_timer is None:
                self._hold_timer = asyncio.get_running_loop().call_later(
                    settings.REALTIME_REORDER_HOLD_MS / 1000, self._hold_expired
                )
            return []
        if last is not None and cursor <= last:
            return [text]  # a late or repeated frame: the device ignores what it has
        out = [text]
        last = cursor
        held = self._held
        while held and last + 1 in held:
            last += 1
            out.append(held.pop(last))
        self._sent_cursor = last
        if not held and self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        return out

    def _hold_expired(self) -> None:
        """The hold's deadline: the held frames go out through the dispatch loop, in turn with
        the frames that came before (a send from here could overtake them)."""
        self._hold_timer = None
        if self._held and self._inject is not None:
            self._inject(_CHANNEL, {"type": "event.release"})

    async def event_release(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        for text in self._release_held():  # (none: the missing frame came meanwhile)
            await self.send(text_data=text)

    def _release_held(self) -> list[str]:
        """The held frames, in cursor order, as sent from now on (the hold ends)."""
        held, self._held = self._held, None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if not held:
            return []
        ordered = sorted(held)
        self._sent_cursor = max(self._sent_cursor or 0, ordered[-1])
        return [held[cursor] for cursor in ordered]

    async def session_revoked(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        for text in self._release_held():  # (the revocation's own event may be among them)
            await self.send(text_data=text)
        self._closed = True  # nothing more goes out on this socket after the close below
        with translation.override(self.language):
            await self.send_json(
                {"type": "error", **error_body("session_revoked", _("This login session was ended."))}
            )
        await self.close(code=realtime.CLOSE_SESSION_REVOKED)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=frames.dumps(content))


_MAX_STALLED_BATCHES = 4
# Batches run on threads of their own, so that frames waiting in the shared executor's threads
# (a send left to its own handler, waiting for a lock) can never leave a batch without a thread.
_BATCH_EXECUTOR = concurrent.futures.ThreadPoolExecutor(
    _MAX_STALLED_BATCHES, thread_name_prefix="ws-frame-batch"
)


class FrameBatcher:
    """The frames of one type (with a batch handler) from every socket of this process, handled in
    batches: while ``REALTIME_FRAME_BATCH_CONCURRENCY`` batches (1) run in worker threads, the
    frames that arrive wait, and the next batch takes them all (up to ``REALTIME_FRAME_BATCH_MAX``).
    An idle process handles a frame at once, alone; a busy one shares each trip to the database
    among as many frames as came meanwhile, as a database's group commit does. Each socket still
    awaits its reply before its next frame is read, so one socket's frames stay in order, one per
    batch at most.
    """

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, FrameBatcher]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, handler: realtime.BatchFrameHandler) -> None:
        self.handler = handler
        self.waiting: list[tuple[realtime.FrameCall, asyncio.Future[Any]]] = []
        self.draining: set[asyncio.Future[None]] = set()
        self.running_since: dict[asyncio.Future[None], float] = {}  # drains in their handler
        # The drains lingering: how many frames each waits for, and the future that says so.
        self.lingering: list[tuple[int, asyncio.Future[None]]] = []
        # Who sent the frames of the last two batches ((user, session) pairs, with the loop time
        # each batch ended), and of the batches running now: a batch lingers for the recent
        # senders that are not in one.
        self.recent: deque[tuple[float, set[tuple[int, str]]]] = deque(maxlen=2)
        self.in_flight: dict[asyncio.Future[None], set[tuple[int, str]]] = {}

    @classmethod
    def of(cls, frame_type: str, handler: realtime.BatchFrameHandler) -> FrameBatcher:
        """This event loop's batcher for the frame type (futures belong to one loop)."""
        batchers = cls._of_loop.setdefault(asyncio.get_running_loop(), {})
        batcher = batchers.get(frame_type)
        if batcher is None or batcher.handler is not handler:
            batcher = batchers[frame_type] = cls(handler)
        return batcher

    async def submit(self, call: realtime.FrameCall) -> dict[str, Any]:
        """The frame's reply (or ``realtime.NOT_BATCHED``); raises the exception the handler gave it."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((call, future))
        for wanted, enough in self.lingering:
            if len(self.waiting) >= wanted and not enough.done():
                enough.set_result(None)
        if len(self.draining) < max(1, settings.REALTIME_FRAME_BATCH_CONCURRENCY) or self._stalled():
            # (A drain leaves the set itself, in the same step as its last look at the queue: a
            # done-callback would run a step later, and a frame arriving in between would wait
            # for a drain that has already stopped.)
            self.draining.add(asyncio.ensure_future(self._drain()))
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _stalled(self) -> bool:
        """Is every drain inside a batch, one of them for longer than the stall limit, and room
        for one more? Then frames that come meanwhile get a batch of their own."""
        if len(self.draining) >= _MAX_STALLED_BATCHES or len(self.running_since) < len(self.draining):
            return False
        limit = asyncio.get_running_loop().time() - settings.REALTIME_FRAME_BATCH_STALL_MS / 1000
        return any(started <= limit for started in self.running_since.values())

    def _unstall(self) -> None:
        if self.waiting and self._stalled():
            self.draining.add(asyncio.ensure_future(self._drain()))

    def _expected(self) -> int:
        """How many senders of the last two batches are not in a running batch: those send their
        next frames as soon as their replies arrive. Only batches that ended within the last
        ``RECENT_S`` count: a sender that has not sent again by then is not about to (an idle
        process's lone frame lingers for nobody; after senders left, one batch at most waits
        one linger for them)."""
        since = asyncio.get_running_loop().time() - self.RECENT_S
        recent = [senders for ended, senders in self.recent if ended >= since]
        if not recent:
            return 0
        busy = set().union(*self.in_flight.values())
        return len(set().union(*recent) - busy)

    RECENT_S = 0.02  # 20 ms: a reply's and the next frame's way through a local network

    async def _drain(self) -> None:
        batch: list[tuple[realtime.FrameCall, asyncio.Future[Any]]] = []
        me = asyncio.current_task()
        try:
            while self.waiting:
                size = max(1, settings.REALTIME_FRAME_BATCH_MAX)
                linger = settings.REALTIME_FRAME_BATCH_LINGER_MS / 1000
                expected = min(self._expected(), size)
                if linger > 0 and len(self.waiting) < expected:
                    # The senders of the last batches send their next frames as soon as their
                    # replies arrive, a network round trip from now: wait that long for them (at
                    # most), so that they share this batch with the frames that came meanwhile,
                    # instead of the senders splitting into groups whose batches alternate (half
                    # as many frames a batch for the same number of senders).
                    entry = (expected, asyncio.get_running_loop().create_future())
                    self.lingering.append(entry)
                    try:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(entry[1], linger)
                    finally:
                        self.lingering.remove(entry)
                    if not self.waiting:  # another batch of this process took them meanwhile
                        break
                batch, self.waiting = self.waiting[:size], self.waiting[size:]
                senders = {(call.user_id, call.session_id) for call, _ in batch}
                self.in_flight[me] = senders  # type: ignore[index]
                # A batch that takes long (a lock wait, a slow statement) must not hold up the
                # frames that come meanwhile: after REALTIME_FRAME_BATCH_STALL_MS they get a
                # batch of their own, beside it (at most 4 at once).
                self.running_since[me] = asyncio.get_running_loop().time()  # type: ignore[index]
                stall = asyncio.get_running_loop().call_later(
                    settings.REALTIME_FRAME_BATCH_STALL_MS / 1000 + 0.001, self._unstall
                )
                try:
                    outcomes = await database_sync_to_async(
                        self.handler, thread_sensitive=False, executor=_BATCH_EXECUTOR
                    )([call for call, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(
                            f"a batch handler gave {len(outcomes)} replies to {len(batch)} frames"
                        )
                except Exception as exc:  # the handler broke its contract: every frame of it fails
                    logger.exception("ws frame batch failed")
                    outcomes = [exc] * len(batch)
                finally:
                    stall.cancel()
                    self.running_since.pop(me, None)  # type: ignore[arg-type]
                    self.in_flight.pop(me, None)  # type: ignore[arg-type]
                    self.recent.append((asyncio.get_running_loop().time(), senders))
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():  # a socket that closed meanwhile no longer waits
                        future.set_result(outcome)
                batch = []
        except BaseException as exc:  # cancelled with the loop: nobody may wait forever
            for _, future in [*batch, *self.waiting]:
                if not future.done():
                    future.set_exception(RuntimeError("the frame batcher stopped"))
            self.waiting = []
            if not isinstance(exc, Exception):
                raise
            logger.exception("ws frame batcher failed")
        finally:
            self.draining.discard(asyncio.current_task())  # type: ignore[arg-type]


async def _dispatch_loop(
    receive: Callable[[], Awaitable[dict[str, Any]]],
    channel_receive: Callable[[], Awaitable[dict[str, Any]]],
    dispatch: Callable[[dict[str, Any]], Awaitable[None]],
    expose_put: Callable[[Callable[[int, Any], None]], None] | None = None,
) -> None:
    """Channels' ``await_many_dispatch([receive, channel_receive], dispatch)``, cheaper per message.

    The same contract: messages are dispatched one at a time, in arrival order; the next client
    message is taken from the server only once the previous one was dispatched (the ASGI
    server's flow control keeps working); an exception of a source, or of ``dispatch``, ends
    the loop; both sources are cancelled on the way out (the channel layer unsubscribes).
    Channels makes a new task per message and waits on both sources with ``asyncio.wait`` each
    time: three task steps and a waiter per message. Here each source has one long-lived task
    that feeds an inbox: a channel message costs two task steps. It matters when one group
    message rings hundreds of sockets of one process: asyncio runs ready tasks in order, so
    the first socket's frame leaves only after the whole batch has gone through the steps
    before the send. ``expose_put`` receives the inbox's ``put`` (the consumer's own messages,
    such as ``event.release``, then take their turn with the others).
    """
    loop = asyncio.get_running_loop()
    inbox: deque[tuple[int, Any]] = deque()  # (_CLIENT | _CHANNEL | _FAILED, message or exception)
    wake: asyncio.Future[None] | None = None
    client_turn: asyncio.Future[None] | None = None

    def put(kind: int, value: Any) -> None:
        inbox.append((kind, value))
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def client_pump() -> None:
        nonlocal client_turn
        while True:
            try:
                message = await receive()
            except BaseException as exc:
                put(_FAILED, exc)
                raise
            client_turn = loop.create_future()
            put(_CLIENT, message)
            await client_turn  # take the next client message once this one is dispatched

    async def channel_pump() -> None:
        while True:
            try:
                message = await channel_receive()
            except BaseException as exc:
                put(_FAILED, exc)
                raise
            put(_CHANNEL, message)

    if expose_put is not None:  # the consumer's own messages (event.release), in turn with the others
        expose_put(put)
    pumps = [asyncio.ensure_future(client_pump()), asyncio.ensure_future(channel_pump())]
    try:
        while True:
            while not inbox:
                wake = loop.create_future()
                await wake
                wake = None
            kind, value = inbox.popleft()
            if kind == _FAILED:
                raise value
            await dispatch(value)
            if kind == _CLIENT and client_turn is not None and not client_turn.done():
                client_turn.set_result(None)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


_CLIENT, _CHANNEL, _FAILED = 0, 1, 2
