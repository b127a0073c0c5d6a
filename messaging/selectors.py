"""Messaging's read interface. Every read checks membership: a non-member gets 404, never a hint.

Query counts are pinned by tests: the conversation list is 3 queries a page whatever its size
(memberships with their conversations, last messages, direct peers), history and search 1-2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core.errors import NotFound, ValidationFailed

from . import content, presence
from .models import Conversation, HiddenMessage, JoinRequest, Member, Message, UserSettings


def _no_conversation() -> NotFound:
    return NotFound(_("No such conversation."), code="conversation_not_found")


def membership_get(*, user_id: int, conversation_id: int) -> Member:
    """My active membership (with its conversation) or 404."""
    member = (
        Member.objects.select_related("conversation")
        .filter(conversation_id=conversation_id, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        raise _no_conversation()
    return member


def conversation_list(*, user_id: int) -> QuerySet[Member]:
    """My active conversations (as memberships), most recent activity first."""
    return Member.objects.filter(user_id=user_id, left_at__isnull=True).select_related("conversation")


def decorate(members: Sequence[Member], *, user_id: int) -> None:
    """Attach ``last_message`` and, for direct chats, ``peer`` to each membership (2 queries)."""
    pairs = [
        (m.conversation_id, m.conversation.last_seq)
        for m in members
        if m.conversation.last_seq > m.joined_seq
    ]
    last: dict[int, Message] = {}
    if pairs:
        where = Q()
        for conv_id, seq in pairs:
            where |= Q(conversation_id=conv_id, seq=seq)
        last = {msg.conversation_id: msg for msg in Message.objects.filter(where).select_related("reply_to")}
    direct = [m.conversation_id for m in members if m.conversation.kind == Conversation.Kind.DIRECT]
    peers: dict[int, Any] = {}
    if direct:
        peers = {
            p.conversation_id: p.user
            for p in Member.objects.filter(conversation_id__in=direct)
            .exclude(user_id=user_id)
            .select_related("user")
        }
    for m in members:
        m.last_message = last.get(m.conversation_id)  # type: ignore[attr-defined]
        m.peer = peers.get(m.conversation_id)  # type: ignore[attr-defined]


def direct_conversation_get(*, user_id: int, peer_id: int) -> Member:
    low, high = sorted((user_id, peer_id))
    member = (
        Member.objects.select_related("conversation")
        .filter(
            user_id=user_id,
            left_at__isnull=True,
            conversation__kind="direct",
            conversation__user_low_id=low,
            conversation__user_high_id=high,
        )
        .first()
    )
    if member is None:
        raise _no_conversation()
    return member


def member_list(*, user_id: int, conversation_id: int) -> QuerySet[Member]:
    membership_get(user_id=user_id, conversation_id=conversation_id)
    return (
        Member.objects.filter(conversation_id=conversation_id, left_at__isnull=True)
        .select_related("user")
        .order_by("joined_at", "id")
    )


def _visible_messages(member: Member, user_id: int) -> QuerySet[Message]:
    hidden = HiddenMessage.objects.filter(user_id=user_id, message_id=OuterRef("pk"))
    return (
        Message.objects.filter(conversation_id=member.conversation_id, seq__gt=member.joined_seq)
        .filter(~Exists(hidden))
        .select_related("reply_to")
    )


def history(
    *,
    user_id: int,
    conversation_id: int,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> tuple[list[Message], bool]:
    """A page of messages by sequence: the newest (no bound), older than ``before``, or newer
    than ``after`` (oldest first then, to read forward). Returns ``(messages ascending, has_more)``."""
    if before is not None and after is not None:
        raise ValidationFailed(
            _("Give before or after, not both."), code="bad_seq", fields={"before": [_("Not with after.")]}
        )
    member = membership_get(user_id=user_id, conversation_id=conversation_id)
    qs = _visible_messages(member, user_id)
    if after is not None:
        rows = list(qs.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return rows[:limit], len(rows) > limit
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = list(qs.order_by("-seq")[: limit + 1])
    return list(reversed(rows[:limit])), len(rows) > limit


def message_get(*, user_id: int, conversation_id: int, seq: int) -> Message:
    member = membership_get(user_id=user_id, conversation_id=conversation_id)
    msg = _visible_messages(member, user_id).filter(seq=seq).first()
    if msg is None:
        raise NotFound(_("No such message."), code="message_not_found")
    return msg


_TERM = re.compile(r"\S+")


def message_search(*, user_id: int, query: str, conversation_id: int | None = None) -> QuerySet[Message]:
    """Messages matching every word of ``query`` in my conversations (only what I may see: since I
    joined, not recalled, not deleted for me). PostgreSQL full-text search (``simple`` config, CJK
    by character as a phrase); ``icontains`` on the embedded SQLite."""
    terms = _TERM.findall(query)[:8]
    if not terms:
        raise ValidationFailed(_("Type something to search for."), fields={"q": [_("Required.")]})
    mine = Member.objects.filter(
        user_id=user_id,
        left_at__isnull=True,
        conversation_id=OuterRef("conversation_id"),
        joined_seq__lt=OuterRef("seq"),
    )
    if conversation_id is not None:
        membership_get(user_id=user_id, conversation_id=conversation_id)
    qs = Message.objects.filter(Exists(mine), recalled_at__isnull=True).exclude(
        Exists(HiddenMessage.objects.filter(user_id=user_id, message_id=OuterRef("pk")))
    )
    if conversation_id is not None:
        qs = qs.filter(conversation_id=conversation_id)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery

        search = None
        for term in terms:
            q = SearchQuery(content.search_document(term).strip(), config="simple", search_type="phrase")
            search = q if search is None else search & q
        qs = qs.filter(search=search)
    else:
        for term in terms:
            qs = qs.filter(text__icontains=term)
    return qs.select_related("reply_to")


def join_request_list(*, user_id: int, conversation_id: int) -> QuerySet[JoinRequest]:
    member = membership_get(user_id=user_id, conversation_id=conversation_id)
    if not member.is_manager:
        raise NotFound()
    return JoinRequest.objects.filter(conversation_id=conversation_id, status="pending").select_related(
        "user"
    )


def settings_get(*, user_id: int) -> UserSettings:
    return UserSettings.objects.filter(user_id=user_id).first() or UserSettings(user_id=user_id)


def presence_visible_to(*, viewer_id: int, user_ids: Iterable[int]) -> set[int]:
    """Which of ``user_ids`` let the viewer see their online state and last seen."""
    ids = set(user_ids)
    visibility = dict(
        UserSettings.objects.filter(user_id__in=ids).values_list("user_id", "presence_visibility")
    )
    friends = account_selectors.friend_ids(user_id=viewer_id)
    shown = {viewer_id} & ids
    everyone = set()
    for uid in ids - {viewer_id}:
        rule = visibility.get(uid, UserSettings.Visibility.FRIENDS)
        if rule == UserSettings.Visibility.NOBODY:
            continue
        if uid in friends:
            shown.add(uid)
        elif rule == UserSettings.Visibility.EVERYONE:
            everyone.add(uid)
    if everyone:
        # "everyone" means: anyone I share an active conversation with (and no block either way).
        blocked = account_selectors.blocked_either_way_ids(user_id=viewer_id)
        mine = Member.objects.filter(user_id=viewer_id, left_at__isnull=True).values("conversation_id")
        shared = set(
            Member.objects.filter(
                conversation_id__in=mine, user_id__in=everyone, left_at__isnull=True
            ).values_list("user_id", flat=True)
        )
        shown |= shared - blocked
    return shown


def presence_get(*, viewer_id: int, user_ids: Iterable[int]) -> list[dict[str, Any]]:
    """``[{user_id, online, last_seen_at}]``; ``None`` for what a user does not show the viewer."""
    ids = list(dict.fromkeys(user_ids))
    shown = presence_visible_to(viewer_id=viewer_id, user_ids=ids)
    online = presence.online_ids(shown)
    seen = presence.last_seen(shown - online)
    out = []
    for uid in ids:
        if uid not in shown:
            out.append({"user_id": uid, "online": None, "last_seen_at": None})
            continue
        at = seen.get(uid)
        out.append({
            "user_id": uid,
            "online": uid in online,
            "last_seen_at": datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z") if at else None,
        })  # fmt: skip
    return out


def unread(member: Member) -> int:
    return max(member.conversation.last_seq - member.last_read_seq, 0)


def mentioned(member: Member) -> bool:
    conv = member.conversation
    return (
        max(member.last_mention_seq, conv.last_mention_all_seq if conv.kind == "group" else 0)
        > member.last_read_seq
    )
