"""Messaging's read interface. Every read checks membership: a non-member gets 404, never a hint.

Query counts are pinned by tests: the conversation list is 3 queries a page whatever its size
(memberships with their conversations, last messages, direct peers), 4 when something is unread
(the hidden messages the unread counts leave out), history and search 1-2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core.errors import Forbidden, NotFound, ValidationFailed

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
    """Attach ``last_message``, ``hidden_unread`` (:func:`hidden_unread`) and, for direct chats,
    ``peer`` to each membership (2 queries, 3 when something is unread)."""
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
    hidden = hidden_unread(members, user_id=user_id)
    for m in members:
        found = last.get(m.conversation_id)
        if found is not None and about_unseen(found, joined_seq=m.joined_seq):
            found = None
        m.last_message = found  # type: ignore[attr-defined]
        m.peer = peers.get(m.conversation_id)  # type: ignore[attr-defined]
        m.hidden_unread = hidden.get(m.conversation_id, 0)  # type: ignore[attr-defined]


def direct_message_check(*, sender_id: int, peer_id: int) -> None:
    """May ``sender_id`` write to ``peer_id`` in a direct chat? Friends (or a peer who accepts
    strangers), no block either way, an active user; raises 404 ``user_not_found``, 403
    ``blocked`` or ``not_friends``. The one rule of direct chats (messages and payments)."""
    flags = account_selectors.relation_flags(user_id=sender_id, other_id=peer_id)
    if flags is None:
        raise NotFound(_("No such user."), code="user_not_found")
    friends, blocked = flags
    if blocked:
        raise Forbidden(_("You cannot message this user."), code="blocked")
    if not friends and not accepts_strangers(user_id=peer_id):
        raise Forbidden(_("Only friends can message this user."), code="not_friends")


def accepts_strangers(*, user_id: int) -> bool:
    """Did ``user_id`` open their direct chat to non-friends (``allow_strangers``)? The one
    place that says so: the direct chat's rule, and whether a group transfer from a non-friend
    may be auto-accepted (payments), read it here. One query."""
    return UserSettings.objects.filter(user_id=user_id, allow_strangers=True).exists()


@dataclass(frozen=True)
class SendTarget:
    """Where a message would go: ``conversation_id`` is None for a direct chat not made yet."""

    conversation_id: int | None
    is_group: bool
    member_count: int  # active members, the sender included
    # The receiver would take a message from the sender in a direct chat: friends, or a receiver
    # who accepts strangers. Only then may a payment be auto-accepted (payment_receiver_check).
    accepts_sender: bool = True


def send_check(
    *, sender_id: int, conversation_id: int | None = None, to_user_id: int | None = None
) -> SendTarget:
    """Would ``message_send`` let ``sender_id`` post there now? Raises the errors it would raise
    (400 no or two targets or oneself, 404 not a member or no such user, 403 blocked or not
    friends); reads only. For a caller that must refuse early (before a PIN check, say): the
    writing service checks again under the conversation's lock."""
    if (conversation_id is None) == (to_user_id is None):
        raise ValidationFailed(
            _("Give conversation_id or to_user_id."),
            fields={"conversation_id": [_("One of the two is required.")]},
        )
    if to_user_id is not None:
        if to_user_id == sender_id:
            raise ValidationFailed(
                _("You cannot message yourself."), code="invalid", fields={"to_user_id": [_("Yourself.")]}
            )
        direct_message_check(sender_id=sender_id, peer_id=to_user_id)
        low, high = sorted((sender_id, to_user_id))
        existing = (
            Conversation.objects.filter(kind=Conversation.Kind.DIRECT, user_low_id=low, user_high_id=high)
            .values_list("id", flat=True)
            .first()
        )
        return SendTarget(conversation_id=existing, is_group=False, member_count=2)
    assert conversation_id is not None
    conv = membership_get(user_id=sender_id, conversation_id=conversation_id).conversation
    if conv.kind == Conversation.Kind.DIRECT:
        peer = conv.user_high_id if conv.user_low_id == sender_id else conv.user_low_id
        direct_message_check(sender_id=sender_id, peer_id=peer)
        return SendTarget(conversation_id=conv.pk, is_group=False, member_count=2)
    return SendTarget(conversation_id=conv.pk, is_group=True, member_count=conv.member_count)


# payment_receiver_check's read in one statement: the conversation (kind, the pair of a direct
# chat, its size) only if the payer is an active member, and whether the receiver is one too.
_PAYMENT_RECEIVER_SQL = """
SELECT c.kind, c.user_low_id, c.user_high_id, c.member_count,
       EXISTS (SELECT 1 FROM messaging_member r
                WHERE r.conversation_id = c.id AND r.user_id = %(receiver_id)s AND r.left_at IS NULL)
  FROM messaging_conversation c
 WHERE c.id = %(conversation_id)s
   AND EXISTS (SELECT 1 FROM messaging_member s
                WHERE s.conversation_id = c.id AND s.user_id = %(sender_id)s AND s.left_at IS NULL)
"""


def payment_receiver_check(*, sender_id: int, receiver_id: int, conversation_id: int) -> SendTarget:
    """May ``sender_id`` pay ``receiver_id`` with a payment shown in ``conversation_id`` (a
    transfer to one member of a group, as WeChat offers)? Reads only; for a caller that must
    refuse before a PIN check. The writing service (``payment_message_post`` with
    ``receiver_id``) checks both memberships again under the conversation's lock.

    In a group: both are active members (a payer who is not, or an unknown conversation: 404
    ``conversation_not_found``, never a hint; a receiver who is not: 404 ``member_not_found``),
    the receiver is an active user (404 ``user_not_found``) and neither blocked the other (403
    ``blocked``); friendship is not needed, as for any message in a group, but it is reported:
    ``accepts_sender`` is False when they are not friends and the receiver does not accept
    strangers (:func:`accepts_strangers`), so that the money waits for the receiver's own accept
    even with auto-accept on (a stranger in a shared group must not put money in a wallet with
    no step to refuse it). In a direct chat: the receiver must be the peer, then the direct
    chat's rule (:func:`direct_message_check`), exactly as a transfer made with the peer's id.
    One statement, plus the relation check (:func:`group_payment_rule`), plus the receiver's
    settings between non-friends.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _PAYMENT_RECEIVER_SQL,
            {"conversation_id": conversation_id, "sender_id": sender_id, "receiver_id": receiver_id},
        )
        row = cursor.fetchone()
    if row is None:
        raise _no_conversation()
    kind, low, high, member_count, receiver_is_member = row
    if not receiver_is_member:
        raise NotFound(_("Not a member."), code="member_not_found")
    if kind == Conversation.Kind.DIRECT:
        direct_message_check(sender_id=sender_id, peer_id=high if low == sender_id else low)
        return SendTarget(conversation_id=conversation_id, is_group=False, member_count=2)
    friends = group_payment_rule(sender_id=sender_id, receiver_id=receiver_id)
    return SendTarget(
        conversation_id=conversation_id,
        is_group=True,
        member_count=member_count,
        accepts_sender=friends or accepts_strangers(user_id=receiver_id),
    )


def group_payment_rule(*, sender_id: int, receiver_id: int) -> bool:
    """The rule between a payer and the member they pay in a group: the receiver is an active
    user (404 ``user_not_found``) and neither blocked the other (403 ``blocked``). A block stops
    a group transfer though not a group message: a message is said to the group, money is given
    to one person who chose not to deal with the payer. Friendship is not needed; returns
    whether they are friends. One statement; run before the PIN (:func:`payment_receiver_check`)
    and again under the group's lock (``payment_message_post``), as the direct chat's rule is."""
    flags = account_selectors.relation_flags(user_id=sender_id, other_id=receiver_id)
    if flags is None:
        raise NotFound(_("No such user."), code="user_not_found")
    friends, blocked = flags
    if blocked:
        raise Forbidden(_("You cannot message this user."), code="blocked")
    return friends


@dataclass(frozen=True)
class PaymentMessageAccess:
    """The chat message of a payment, as one member may see it."""

    conversation_id: int
    seq: int
    is_group: bool


# payment_message_access in one hand-written statement: it runs on every red-packet grab (the
# crowd that arrives after the last share too), and building it with the ORM (a join, an
# EXISTS over OuterRef) cost ~2.3 ms of CPU per call, more than the grab's money transaction.
_PAYMENT_MESSAGE_ACCESS_SQL = """
SELECT m.conversation_id, m.seq, c.kind
  FROM messaging_message m
  JOIN messaging_conversation c ON c.id = m.conversation_id
 WHERE m.sender_id = %s AND m.client_msg_id = %s AND m.kind = %s
   AND EXISTS (SELECT 1 FROM messaging_member mb
                WHERE mb.conversation_id = m.conversation_id AND mb.user_id = %s
                  AND mb.left_at IS NULL AND mb.joined_seq < m.seq)
 LIMIT 1
"""


def payment_message_access(
    *, user_id: int, sender_id: int, kind: str, object_id: int
) -> PaymentMessageAccess | None:
    """The message of a payment (``kind`` transfer or red_packet, the payment's id, its sender)
    if ``user_id`` may see it now: an active member of its conversation who joined before it
    (the sender too). ``None`` for anyone else: a stranger, a member who left, a newcomer who
    joined after it, or a payment without a message. One query (at most one row: (sender,
    client_msg_id) is unique)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PAYMENT_MESSAGE_ACCESS_SQL,
            [sender_id, content.payment_client_msg_id(kind, object_id), kind, user_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return PaymentMessageAccess(
        conversation_id=row[0], seq=row[1], is_group=row[2] == Conversation.Kind.GROUP
    )


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
    qs = Message.objects.filter(conversation_id=member.conversation_id, seq__gt=member.joined_seq)
    if member.joined_seq:
        # A newcomer: a payment's notice line ("transfer accepted") about a bubble from before
        # the join is hidden with its bubble (``about_unseen``). ``has_key`` first: without the
        # key, the comparison would be NULL and NOT would hide every other system line too.
        qs = qs.exclude(
            kind=Message.Kind.SYSTEM,
            content__has_key="message_seq",
            content__message_seq__lte=member.joined_seq,
        )
    return qs.filter(~Exists(hidden)).select_related("reply_to")


def visible_after(member: Member, *, seq: int) -> bool:
    """Does the member see any message after ``seq``? (:func:`history`'s rules.)"""
    return _visible_messages(member, member.user_id).filter(seq__gt=seq).exists()


def about_unseen(msg: Message, *, joined_seq: int) -> bool:
    """Is ``msg`` a payment's notice line (``content.message_seq``) about a message its reader
    cannot see (from before they joined)? Such a line is hidden with its bubble: from history
    (:func:`history`), the conversation list's last message, and its ``message.new`` (messaging's
    ``payment_message_update`` sends it only to the members who see the bubble), so that a
    member who joined after a transfer learns nothing about it, in events as in history."""
    about = msg.content.get("message_seq") if msg.kind == Message.Kind.SYSTEM else None
    return isinstance(about, int) and about <= joined_seq


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
    """The member's unread messages: those after the read mark, less the ones hidden from them
    (``hidden_unread``, attached by :func:`decorate`)."""
    behind = member.conversation.last_seq - member.last_read_seq
    return max(behind - getattr(member, "hidden_unread", 0), 0)


def hidden_unread(members: Sequence[Member], *, user_id: int) -> dict[int, int]:
    """Per conversation, how many messages after each membership's read mark the user does not
    see (:func:`history`'s rules): deleted for them, or a payment's notice line about a bubble from
    before they joined (``about_unseen``). Unread counts are the distance to the last seq, so
    these are what they subtract. One query, none when nothing is unread; it reads only rows it
    counts: the user's hidden rows after each mark (``HiddenMessage`` keeps its message's
    conversation and seq, indexed by user) and, for newcomers to a group, the notice lines after
    the mark (through their partial index)."""
    behind = [m for m in members if m.conversation.last_seq > m.last_read_seq]
    if not behind:
        return {}
    # Bounded by the last seq the caller read too: a message hidden from the member that commits
    # between the two reads is not in the distance it is subtracted from.
    after_mark = Q()
    for m in behind:
        after_mark |= Q(
            conversation_id=m.conversation_id, seq__gt=m.last_read_seq, seq__lte=m.conversation.last_seq
        )
    counts = (
        HiddenMessage.objects.filter(after_mark, user_id=user_id)
        .values("conversation_id")
        .annotate(n=Count("pk"))
        .values_list("conversation_id", "n")
    )
    newcomers = [m for m in behind if m.joined_seq > 0]
    if newcomers:
        unseen_lines = Q()
        for m in newcomers:
            unseen_lines |= Q(
                conversation_id=m.conversation_id,
                seq__gt=m.last_read_seq,
                seq__lte=m.conversation.last_seq,
                content__message_seq__lte=m.joined_seq,
            )
        counts = counts.union(
            Message.objects.filter(unseen_lines, kind=Message.Kind.SYSTEM, content__has_key="message_seq")
            .exclude(Exists(HiddenMessage.objects.filter(user_id=user_id, message_id=OuterRef("pk"))))
            .values("conversation_id")
            .annotate(n=Count("pk"))
            .values_list("conversation_id", "n"),
            all=True,
        )
    out: dict[int, int] = {}
    for conv_id, n in counts:
        out[conv_id] = out.get(conv_id, 0) + n
    return out


def mentioned(member: Member) -> bool:
    """An unread message mentions the member (or everyone). Never with nothing unread: a mention
    deleted for the member (``hidden_unread``) leaves no "[@me]" on a chat with 0 unread."""
    conv = member.conversation
    return (
        max(member.last_mention_seq, conv.last_mention_all_seq if conv.kind == "group" else 0)
        > member.last_read_seq
        and unread(member) > 0
    )
