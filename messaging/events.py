"""Event types of messaging and their payloads (REST answers render through the same builders).

Stored events (each carries the recipient's cursor; ``sync since <cursor>`` returns them):

============================== ============================================ =====================
type                           data                                         to
============================== ============================================ =====================
``message.new``                :func:`message` (system messages too)        active members; a
                                                                            payment's notice
                                                                            line: as below
``message.recalled``           :func:`recall`                               active members
``message.updated``            :func:`message` as it is now (a transfer's   active members who
                               ``content.status`` changed)                  joined before it
                                                                            (who can see it)
``message.deleted``            ``{conversation_id, seq}`` (delete for me)   my devices
``conversation.read``          ``{conversation_id, user_id, last_read_seq}`` my devices; the peer
                                                                            of a direct chat
``conversation.new``           ``{conversation}``                           members, on creation
                                                                            or when they join
``conversation.updated``       ``{conversation, changed: [...]}``           active members
``conversation.member.added``  ``{conversation_id, members: [...], by}``     active members
``conversation.member.removed`` ``{conversation_id, user_id, reason, by}``   members + the one
                                                                            who left
``conversation.member.updated`` ``{conversation_id, member}``               active members
``conversation.settings``      ``{conversation_id, muted, pinned}``         my devices
``conversation.dissolved``     ``{conversation_id, by}``                    every last member
``conversation.join_request``  ``{request}``                                owner and admins
``messaging.settings.updated`` :func:`user_settings`                        my devices
============================== ============================================ =====================

Ephemeral frames (never stored, no cursor; sent straight through the channel layer):
``typing`` ``{conversation_id, user_id}`` and ``presence`` ``{user_id, online, last_seen_at}``.
"""

from __future__ import annotations

from typing import Any

from accounts import selectors as account_selectors

MESSAGE_NEW = "message.new"
MESSAGE_RECALLED = "message.recalled"
MESSAGE_UPDATED = "message.updated"
MESSAGE_DELETED = "message.deleted"
CONVERSATION_READ = "conversation.read"
CONVERSATION_NEW = "conversation.new"
CONVERSATION_UPDATED = "conversation.updated"
MEMBER_ADDED = "conversation.member.added"
MEMBER_REMOVED = "conversation.member.removed"
MEMBER_UPDATED = "conversation.member.updated"
CONVERSATION_SETTINGS = "conversation.settings"
CONVERSATION_DISSOLVED = "conversation.dissolved"
JOIN_REQUEST = "conversation.join_request"
SETTINGS_UPDATED = "messaging.settings.updated"

ALL_TYPES = (
    MESSAGE_NEW,
    MESSAGE_RECALLED,
    MESSAGE_UPDATED,
    MESSAGE_DELETED,
    CONVERSATION_READ,
    CONVERSATION_NEW,
    CONVERSATION_UPDATED,
    MEMBER_ADDED,
    MEMBER_REMOVED,
    MEMBER_UPDATED,
    CONVERSATION_SETTINGS,
    CONVERSATION_DISSOLVED,
    JOIN_REQUEST,
    SETTINGS_UPDATED,
)

# Ephemeral frame types.
TYPING = "typing"
PRESENCE = "presence"

QUOTE_CHARS = 100


def _url(field) -> str | None:
    return field.url if field else None


def _time(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# How a person appears in messaging: the accounts app's brief shape.
user_brief = account_selectors.user_brief


def quote(msg) -> dict[str, Any]:
    """What a reply shows of the message it quotes (nothing of a recalled one)."""
    recalled = msg.recalled_at is not None
    return {
        "id": msg.id,
        "seq": msg.seq,
        "sender_id": msg.sender_id,
        "kind": msg.kind,
        "text": "" if recalled else msg.text[:QUOTE_CHARS],
        "recalled": recalled,
    }


def message(msg, *, reply_to=None) -> dict[str, Any]:
    """A message as every member's device sees it. A recalled one keeps only who, when and kind.

    ``reply_to``: the quoted message, when the caller has it at hand (else ``msg.reply_to``).
    """
    recalled = msg.recalled_at is not None
    quoted = reply_to if reply_to is not None else (msg.reply_to if msg.reply_to_id else None)
    return {
        "id": msg.id,
        "conversation_id": msg.conversation_id,
        "seq": msg.seq,
        "sender_id": msg.sender_id,
        "client_msg_id": msg.client_msg_id,
        "kind": msg.kind,
        "text": "" if recalled else msg.text,
        "content": {} if recalled else msg.content,
        "reply_to": quote(quoted) if quoted is not None and not recalled else None,
        "mentions": [] if recalled else msg.mentions,
        "mention_all": False if recalled else msg.mention_all,
        "forwarded": msg.forwarded,
        "created_at": _time(msg.created_at),
        "recalled": recalled,
        "recalled_at": _time(msg.recalled_at),
        "recalled_by": msg.recalled_by_id,
    }


def recall(msg) -> dict[str, Any]:
    return {
        "conversation_id": msg.conversation_id,
        "id": msg.id,
        "seq": msg.seq,
        "sender_id": msg.sender_id,
        "recalled_by": msg.recalled_by_id,
        "recalled_at": _time(msg.recalled_at),
    }


def conversation(conv) -> dict[str, Any]:
    """The shared state of a conversation (the same for every member)."""
    return {
        "id": conv.id,
        "kind": conv.kind,
        "name": conv.name,
        "avatar_url": _url(conv.avatar),
        "avatar_thumb_url": _url(conv.avatar_thumb),
        "announcement": conv.announcement,
        "announcement_at": _time(conv.announcement_at),
        "owner_id": conv.owner_id,
        "invite_approval": conv.invite_approval,
        "member_count": conv.member_count,
        "direct_user_ids": [conv.user_low_id, conv.user_high_id] if conv.kind == "direct" else None,
        "last_seq": conv.last_seq,
        "created_at": _time(conv.created_at),
        "dissolved": conv.dissolved_at is not None,
    }


def member(m) -> dict[str, Any]:
    """A member as the others see them (needs ``m.user`` loaded)."""
    return {
        "user": user_brief(m.user),
        "role": m.role,
        "nickname": m.nickname,
        "joined_at": _time(m.joined_at),
    }


def read(*, conversation_id: int, user_id: int, last_read_seq: int) -> dict[str, Any]:
    return {"conversation_id": conversation_id, "user_id": user_id, "last_read_seq": last_read_seq}


def member_settings(m) -> dict[str, Any]:
    return {
        "conversation_id": m.conversation_id,
        "muted": m.muted,
        "pinned": m.pinned,
        "nickname": m.nickname,
    }


def join_request(req) -> dict[str, Any]:
    return {
        "id": req.id,
        "conversation_id": req.conversation_id,
        "user": user_brief(req.user),
        "inviter_id": req.inviter_id,
        "via_link": req.via_link,
        "status": req.status,
        "created_at": _time(req.created_at),
    }


def user_settings(s) -> dict[str, Any]:
    return {
        "show_preview": s.show_preview,
        "allow_strangers": s.allow_strangers,
        "presence_visibility": s.presence_visibility,
    }
