"""Messaging's WebSocket frames and socket hooks (registered from ``MessagingConfig.ready``).

Client frames (each answered with ``<type>.result`` carrying the client's ``ref``, or ``error``):

* ``message.send`` ``{conversation_id | to_user_id, client_msg_id, kind, text?, content?,
  reply_to_seq?, mentions?, mention_all?}`` -> ``{message, created}``, sent after the commit;
* ``message.recall`` ``{conversation_id, seq}`` -> ``{message}``;
* ``read`` ``{conversation_id, seq}`` -> ``{conversation_id, last_read_seq}``;
* ``typing`` ``{conversation_id}`` -> ``{}`` (the other members get an ephemeral ``typing``);
* ``presence.query`` ``{user_ids: [...]}`` -> ``{presence: [...]}``;
* ``presence.heartbeat`` ``{}`` -> ``{cursor}`` (keeps this user online; send every 30 s).
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core import realtime
from superapp.core.errors import ValidationFailed

from . import events, presence, realtime_fanout, selectors, services
from .models import UserSettings

logger = logging.getLogger(__name__)


def _int(frame: dict[str, Any], name: str) -> int:
    value = frame.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationFailed(fields={name: ["A positive integer is required."]})
    return value


@realtime.frame_handler("message.send")
def handle_send(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    result = services.message_send(**_send_arguments(user_id, frame))
    return {
        "type": "message.send.result",
        "message": events.message(result.message),
        "created": result.created,
    }


@realtime.frame_batch_handler("message.send")
def handle_send_batch(calls: list[realtime.FrameCall]) -> list[Any]:
    """The ``message.send`` frames of several sockets at once (``services.message_send_many``):
    each gets the reply :func:`handle_send` would give it."""
    outcomes = services.message_send_many(
        [_send_arguments(call.user_id, call.frame) for call in calls],
        languages=[call.language for call in calls],
        defer=True,  # those that go on their own run beside the batch, each in its own thread
    )
    return [
        realtime.NOT_BATCHED
        if outcome is None
        else outcome
        if isinstance(outcome, Exception)
        else {
            "type": "message.send.result",
            "message": events.message(outcome.message),
            "created": outcome.created,
        }
        for outcome in outcomes
    ]


def _send_arguments(user_id: int, frame: dict[str, Any]) -> dict[str, Any]:
    return {
        "sender_id": user_id,
        "client_msg_id": frame.get("client_msg_id"),
        "kind": frame.get("kind"),
        "conversation_id": frame.get("conversation_id"),
        "to_user_id": frame.get("to_user_id"),
        "text": frame.get("text", ""),
        "content_fields": frame.get("content"),
        "reply_to_seq": frame.get("reply_to_seq"),
        "mentions": frame.get("mentions"),
        "mention_all": frame.get("mention_all", False),
    }


@realtime.frame_handler("message.recall")
def handle_recall(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    msg = services.message_recall(
        user_id=user_id, conversation_id=_int(frame, "conversation_id"), seq=_int(frame, "seq")
    )
    return {"type": "message.recall.result", "message": events.message(msg)}


@realtime.frame_handler("read")
def handle_read(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    conversation_id = _int(frame, "conversation_id")
    seq = services.conversation_mark_read(
        user_id=user_id, conversation_id=conversation_id, seq=_int(frame, "seq")
    )
    return {"type": "read.result", "conversation_id": conversation_id, "last_read_seq": seq}


@realtime.frame_handler("typing")
def handle_typing(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    services.typing_notify(user_id=user_id, conversation_id=_int(frame, "conversation_id"))
    return {"type": "typing.result"}


@realtime.frame_handler("presence.query")
def handle_presence_query(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    ids = frame.get("user_ids")
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= 200
        or any(isinstance(u, bool) or not isinstance(u, int) or u <= 0 for u in ids)
    ):
        raise ValidationFailed(fields={"user_ids": ["A list of 1-200 user ids."]})
    return {"type": "presence.result", "presence": selectors.presence_get(viewer_id=user_id, user_ids=ids)}


@realtime.frame_handler("presence.heartbeat")
def handle_heartbeat(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    presence.heartbeat(user_id=user_id)
    return {"type": "presence.heartbeat.result", "cursor": core_events.current_cursor(user_id=user_id)}


def _announce(user_id: int, *, online: bool) -> None:
    """Tell the user's online friends (if the user lets them see it) that they came or went."""
    rule = UserSettings.objects.filter(user_id=user_id).values_list("presence_visibility", flat=True).first()
    if rule == UserSettings.Visibility.NOBODY:
        return
    friends = presence.online_ids(account_selectors.friend_ids(user_id=user_id))
    if friends:
        seen = None if online else timezone.now().isoformat().replace("+00:00", "Z")
        realtime_fanout.ephemeral(
            user_ids=sorted(friends),
            frame={
                "type": events.PRESENCE,
                "data": {"user_id": user_id, "online": online, "last_seen_at": seen},
            },
        )


@realtime.socket_hook("connect")
def on_connect(identity: realtime.SocketIdentity, channel_name: str) -> None:
    if presence.socket_opened(user_id=identity.user_id, channel=channel_name):
        _announce(identity.user_id, online=True)


@realtime.socket_hook("disconnect")
def on_disconnect(identity: realtime.SocketIdentity, channel_name: str) -> None:
    if presence.socket_closed(user_id=identity.user_id, channel=channel_name):
        _announce(identity.user_id, online=False)
