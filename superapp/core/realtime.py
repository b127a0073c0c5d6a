"""Registry of WebSocket client-frame handlers, and the core ones (``sync``, ``ping``).

The one consumer (:mod:`superapp.core.consumers`) holds no business logic: it looks the frame's
``type`` up here and runs the handler in a worker thread (``database_sync_to_async``). Apps add
their frames from ``AppConfig.ready()``::

    @realtime.frame_handler("message.send")
    def send(*, user_id, session_id, frame): ...  # calls a service, returns the reply dict
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from . import events
from .errors import ValidationFailed

logger = logging.getLogger(__name__)

FrameHandler = Callable[..., dict[str, Any]]
_handlers: dict[str, FrameHandler] = {}


@dataclass(frozen=True)
class SocketIdentity:
    """Who is on the other end of a socket, as established by the WS authenticator."""

    user_id: int
    session_id: str


class SocketAuthError(Exception):
    """Raised by a WS authenticator; the socket is closed with ``close_code``."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


# Close codes (4000-4999 are the application's own, RFC 6455 section 7.4.2).
CLOSE_UNAUTHENTICATED = 4001  # no credentials, bad token or bad ticket
CLOSE_TOKEN_EXPIRED = 4002  # the access token expired: refresh it and reconnect
CLOSE_SESSION_REVOKED = 4003  # the login session was logged out or revoked


def frame_handler(frame_type: str) -> Callable[[FrameHandler], FrameHandler]:
    def register(func: FrameHandler) -> FrameHandler:
        if frame_type in _handlers and _handlers[frame_type] is not func:
            raise RuntimeError(f"WebSocket frame {frame_type!r} registered twice")
        _handlers[frame_type] = func
        return func

    return register


def get_frame_handler(frame_type: str) -> FrameHandler | None:
    return _handlers.get(frame_type)


@dataclass(frozen=True)
class FrameCall:
    """One socket's frame, handed to a batch handler with other sockets' frames of its type."""

    user_id: int
    session_id: str
    frame: dict[str, Any]
    language: str


# A batch handler takes the frames of one type that several sockets sent while the previous batch
# ran, and returns one outcome per frame, in order: the reply dict, the exception that frame gets
# (an ApplicationError: an error frame), or NOT_BATCHED: the frame's own handler is to run it,
# in a worker thread of its own outside the batch (a frame that could wait on a lock, or that a
# rolled-back batch could not settle). Each frame must get what its own handler would give it.
NOT_BATCHED: Any = object()
BatchFrameHandler = Callable[[list[FrameCall]], list[Any]]
_batch_handlers: dict[str, BatchFrameHandler] = {}


def frame_batch_handler(frame_type: str) -> Callable[[BatchFrameHandler], BatchFrameHandler]:
    """Register a batch handler beside a frame's own handler (``frame_handler``): the consumer
    then runs the frames of that type from all the sockets of the process together, one batch
    at a time (``superapp.core.consumers.FrameBatcher``), so that they share one trip to a worker
    thread and whatever the handler can share (one transaction, one publish). Off with
    ``REALTIME_FRAME_BATCHING=false``: each frame then goes to its own handler."""

    def register(func: BatchFrameHandler) -> BatchFrameHandler:
        if frame_type in _batch_handlers and _batch_handlers[frame_type] is not func:
            raise RuntimeError(f"WebSocket batch frame {frame_type!r} registered twice")
        _batch_handlers[frame_type] = func
        return func

    return register


def get_frame_batch_handler(frame_type: str) -> BatchFrameHandler | None:
    return _batch_handlers.get(frame_type)


# Socket lifecycle hooks: apps learn that a socket of a user opened or closed (presence), without
# the consumer knowing any app. A hook runs in a worker thread; its failure is logged, never raised.
SocketHook = Callable[[SocketIdentity, str], None]
_socket_hooks: dict[str, list[SocketHook]] = {"connect": [], "disconnect": []}


def socket_hook(event: str) -> Callable[[SocketHook], SocketHook]:
    """Register ``hook(identity, channel_name)`` for ``"connect"`` or ``"disconnect"``."""

    def register(func: SocketHook) -> SocketHook:
        if func not in _socket_hooks[event]:
            _socket_hooks[event].append(func)
        return func

    return register


def has_socket_hooks(event: str) -> bool:
    return bool(_socket_hooks[event])


def run_socket_hooks(event: str, identity: SocketIdentity, channel_name: str) -> None:
    for hook in _socket_hooks[event]:
        try:
            hook(identity, channel_name)
        except Exception:
            logger.exception("socket %s hook %s failed", event, getattr(hook, "__name__", hook))


def _int_field(frame: dict[str, Any], name: str, default: int | None = None) -> int:
    value = frame.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(
            _("'%(name)s' must be a non-negative integer.") % {"name": name},
            fields={name: [_("A non-negative integer is required.")]},
        )
    return value


@frame_handler("sync")
def handle_sync(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    """``{"type": "sync", "since": N, "limit": 100}`` -> the events after N, as over REST."""
    since = _int_field(frame, "since")
    limit = _int_field(frame, "limit", 100)
    page = events.events_since(user_id=user_id, since=since, limit=limit)
    return {"type": "sync.result", **page}


@frame_handler("ping")
def handle_ping(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "pong", "cursor": events.current_cursor(user_id=user_id)}
