"""Messages: send (idempotent), recall, delete for me, forward, read marks, typing."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from superapp.core.prepared import execute_bound, pipeline

from .. import content, events, notifications, realtime_fanout, selectors
from ..models import Attachment, Conversation, HiddenMessage, Member, Message
from . import _core
from .media import attachment_content, attachments_lock_shared

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    message: Message
    created: bool  # False: a retry of a message already stored (same client_msg_id)


# Servers' clocks may differ: stored events are looked for from this long before the message.
REDACT_CLOCK_MARGIN = timedelta(minutes=10)


def _direct_conversation(*, sender_id: int, peer_id: int) -> tuple[Conversation, bool]:
    """The direct conversation of the pair, created (with both members) when missing."""
    if peer_id == sender_id:
        raise ValidationFailed(
            _("You cannot message yourself."), code="invalid", fields={"to_user_id": [_("Yourself.")]}
        )
    _core.check_direct_allowed(sender_id=sender_id, peer_id=peer_id)
    low, high = sorted((sender_id, peer_id))
    conv, created = Conversation.objects.get_or_create(
        kind=Conversation.Kind.DIRECT, user_low_id=low, user_high_id=high, defaults={"member_count": 2}
    )
    if created:
        Member.objects.bulk_create([Member(conversation=conv, user_id=uid) for uid in (low, high)])
    return conv, created


def _resolve_media(draft: content.Draft, *, sender_id: int) -> dict[str, Any]:
    # Locked until the message commits: a recall's purge either waits and sees this message, or
    # has deleted the upload first and the send fails with media_not_found.
    attachment = attachments_lock_shared(media_ids=[draft.media_id], owner_id=sender_id).get(
        str(draft.media_id)
    )
    if attachment is None:
        raise ValidationFailed(
            _("No such upload."), code="media_not_found", fields={"content.media_id": [_("Upload it first.")]}
        )
    if attachment.kind != draft.kind:
        raise ValidationFailed(
            _("The upload is not of this kind."),
            code="media_kind_mismatch",
            fields={"kind": [attachment.kind]},
        )
    if attachment.used_at is None:
        Attachment.objects.filter(pk=attachment.pk).update(used_at=timezone.now())
    return attachment_content(attachment)


def _resolve_contact(draft: content.Draft, *, sender_id: int) -> dict[str, Any]:
    assert draft.contact_user_id is not None
    try:
        target = account_selectors.user_get(user_id=draft.contact_user_id)
        viewer = account_selectors.user_get(user_id=sender_id)
    except NotFound:
        target = None
    if target is None or not account_selectors.profile_visible(viewer=viewer, target=target):
        raise ValidationFailed(
            _("No such user."), code="user_not_found", fields={"content.user_id": [_("Unknown.")]}
        )
    return {"user": events.user_brief(target)}


def _check_mentions(r: _core.Roster, draft: content.Draft, *, sender: Member) -> None:
    if not draft.mentions and not draft.mention_all:
        return
    if not r.conversation.is_group:
        raise ValidationFailed(
            _("Mentions are for groups."), fields={"mentions": [_("Not in a direct chat.")]}
        )
    if draft.mention_all and not sender.is_manager:
        raise Forbidden(_("Only the owner and admins can mention everyone."), code="mention_all_forbidden")
    strangers = [uid for uid in draft.mentions if uid not in r.members]
    if strangers:
        raise ValidationFailed(
            _("Only members can be mentioned."), code="invalid_mention", fields={"mentions": [str(strangers)]}
        )


def _reply_target(r: _core.Roster, seq: int | None, *, member: Member) -> Message | None:
    if seq is None:
        return None
    target = Message.objects.filter(conversation=r.conversation, seq=seq, seq__gt=member.joined_seq).first()
    if target is None or target.kind == Message.Kind.SYSTEM:
        raise ValidationFailed(
            _("No such message to reply to."), code="bad_seq", fields={"reply_to_seq": [_("Unknown.")]}
        )
    return target


def _existing(
    sender_id: int, client_msg_id: str, conversation_id: int | None, to_user_id: int | None
) -> Message:
    msg = (
        Message.objects.select_related("reply_to", "conversation")
        .filter(sender_id=sender_id, client_msg_id=client_msg_id)
        .first()
    )
    if msg is None:
        raise Conflict(_("The message could not be stored; retry."), code="retry")
    conv = msg.conversation
    same = (conversation_id is not None and conv.pk == conversation_id) or (
        to_user_id is not None
        and conv.kind == Conversation.Kind.DIRECT
        and to_user_id in (conv.user_low_id, conv.user_high_id)
    )
    if not same:
        raise Conflict(
            _("This client_msg_id was used for another conversation."), code="client_msg_id_reused"
        )
    return msg


def message_send(
    *,
    sender_id: int,
    client_msg_id: Any,
    kind: Any,
    conversation_id: Any = None,
    to_user_id: Any = None,
    text: Any = "",
    content_fields: Any = None,
    reply_to_seq: Any = None,
    mentions: Any = None,
    mention_all: Any = False,
) -> SendResult:
    """Store a message and publish it to every active member's stream (their devices are rung
    after commit). Exactly one of ``conversation_id`` / ``to_user_id`` (a direct chat, created on
    the first message).

    Idempotent on ``(sender, client_msg_id)``: a retry (also a concurrent one) returns the stored
    message with ``created=False`` and publishes nothing.
    """
    send = _checked_send(
        sender_id=sender_id, client_msg_id=client_msg_id, kind=kind, conversation_id=conversation_id,
        to_user_id=to_user_id, text=text, content_fields=content_fields, reply_to_seq=reply_to_seq,
        mentions=mentions, mention_all=mention_all,
    )  # fmt: skip
    return _send_alone(send)


@dataclass(frozen=True)
class _Send:
    """A send whose input passed the checks that need no database."""

    sender_id: int
    client_msg_id: str
    draft: content.Draft
    conversation_id: int | None
    to_user_id: int | None


def _checked_send(
    *,
    sender_id: int,
    client_msg_id: Any,
    kind: Any,
    conversation_id: Any = None,
    to_user_id: Any = None,
    text: Any = "",
    content_fields: Any = None,
    reply_to_seq: Any = None,
    mentions: Any = None,
    mention_all: Any = False,
) -> _Send:
    client_msg_id = content.check_client_msg_id(client_msg_id)
    draft = content.check_draft(
        kind=kind, text=text, content=content_fields, reply_to_seq=reply_to_seq, mentions=mentions,
        mention_all=mention_all,
    )  # fmt: skip
    if (conversation_id is None) == (to_user_id is None):
        raise ValidationFailed(
            _("Give conversation_id or to_user_id."),
            fields={"conversation_id": [_("One of the two is required.")]},
        )
    conversation_id = content.positive_int(conversation_id, "conversation_id", allow_none=True)
    to_user_id = content.positive_int(to_user_id, "to_user_id", allow_none=True)
    return _Send(sender_id, client_msg_id, draft, conversation_id, to_user_id)


def _send_alone(send: _Send, *, lock_timeout: bool = False) -> SendResult:
    try:
        with transaction.atomic():
            if lock_timeout:  # (a lone send on a batch's thread: see message_send_many)
                _batch_lock_timeout()
            return _send(
                send.sender_id, send.client_msg_id, send.draft, send.conversation_id, send.to_user_id
            )
    except IntegrityError:
        # Another send with this client_msg_id committed first (the unique constraint decided).
        return SendResult(
            _existing(send.sender_id, send.client_msg_id, send.conversation_id, send.to_user_id),
            created=False,
        )


@dataclass
class _Shared:
    """What the sends of one batch publish together, once, after the last of them."""

    specs: list[core_events.EventSpec] = field(default_factory=list)
    recipient_ids: list[int] = field(default_factory=list)


def message_send_many(
    sends: Sequence[dict[str, Any]], *, languages: Sequence[str] | None = None, defer: bool = False
) -> list[SendResult | Exception | None]:
    """Several sends (each the keyword arguments of :func:`message_send`), from several senders,
    with the outcome each would get from ``message_send``: its ``SendResult``, or the exception it
    would raise. For less: the sends that pass the checks needing no database are stored in one
    transaction, their events published by one ``publish_many`` (one doorbell after the commit)
    and the push scheduled once, in the order of their conversations' ids (the order in which
    sends take conversation locks elsewhere too).

    Each is stored as ``message_send`` stores it. Some go on their own through ``message_send``'s
    path instead: a retry (a ``client_msg_id`` already stored, or twice in the batch), a send to a
    ``to_user_id`` (it may create the chat), and a send that a check refuses or that fails
    inside the batch (a plain one is left out before anything is written, another is rolled back
    to its savepoint): that path says which error. If the batch itself fails (a conflict, a
    deadlock, a lock wait longer than ``MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS``), it is rolled back
    and every send of it goes on its own. Every outcome exists only once the transaction that
    stored it has committed.

    ``defer``: the sends that go on their own are not sent here but left as ``None`` for the
    caller to send through ``message_send`` (the socket consumer runs them side by side in worker
    threads of their own, where a lock wait holds up only them; a lone send is still sent here). ``languages``: each send's (its
    errors' messages). An error that is not an ``ApplicationError`` is that send's outcome too, so
    one failure never takes the others' outcomes with it.
    """
    outcomes: list[SendResult | Exception | None] = [None] * len(sends)
    language = (
        (lambda index: translation.override(languages[index]))
        if languages
        else (lambda index: contextlib.nullcontext())
    )
    checked: list[tuple[int, _Send]] = []
    for index, kwargs in enumerate(sends):
        try:
            with language(index):
                checked.append((index, _checked_send(**kwargs)))
        except Exception as exc:  # an ApplicationError, or this send's own bug: its outcome alone
            outcomes[index] = exc
    alone: list[tuple[int, _Send]] = []
    together: list[tuple[int, _Send]] = []
    keys: set[tuple[int, str]] = set()
    for index, send in checked:
        key = (send.sender_id, send.client_msg_id)
        if send.conversation_id is None or key in keys:
            alone.append((index, send))
        else:
            keys.add(key)
            together.append((index, send))
    if len(together) == 1:  # nothing to share: message_send's own path costs less for one
        alone += together
        together = []
    if together:
        together.sort(key=lambda item: (item[1].conversation_id, item[0]))
        shared = _Shared()
        try:
            with transaction.atomic():
                results, left = _send_together(together, shared)
                notifications.schedule_on_commit(sender_id=0, recipient_ids=shared.recipient_ids)
        except Exception:  # a check, a conflict, a deadlock, a bug: each tells its own outcome
            logger.info("batched sends rolled back; sending each on its own", exc_info=True)
            alone += together  # rolled back: each on its own, as if never batched
        else:
            for index, result in results:
                outcomes[index] = result
            alone += left
    if defer and len(sends) > 1:
        return outcomes  # the ones left alone are the caller's to send
    if defer and alone:  # a lone send, on the batch's thread: it too may not wait for long
        index, send = alone[0]
        try:
            with language(index):
                outcomes[index] = _send_alone(send, lock_timeout=True)
        except OperationalError as exc:
            if not _lock_timed_out(exc):
                outcomes[index] = exc
            # else: a lock another transaction holds: left to the caller, where only it waits
        except Exception as exc:  # an ApplicationError, or this send's own failure
            outcomes[index] = exc
        return outcomes
    for index, send in sorted(alone, key=lambda item: item[0]):
        try:
            with language(index):
                outcomes[index] = _send_alone(send)
        except Exception as exc:  # an ApplicationError, or this send's own failure
            outcomes[index] = exc
    return outcomes


def _batch_lock_timeout() -> None:
    """Inside a transaction: lock waits of its statements end after
    ``MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS`` (lock_not_available, 55P03), on PostgreSQL."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, true)",
                [f"{int(settings.MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS)}ms"],
            )


def _send_together(
    together: list[tuple[int, _Send]], shared: _Shared
) -> tuple[list[tuple[int, SendResult]], list[tuple[int, _Send]]]:
    """Inside the batch's transaction: every conversation locked first, in id order (as
    ``lock_conversations`` always does), then the plain messages (no reply, mention, media or
    contact card) stored and published by a fixed number of statements on PostgreSQL, the others
    one by one, each in a savepoint of its own. Returns the results and the sends left to go on
    their own: retries (a ``client_msg_id`` stored already), refused plain ones, and the others
    that failed (their own path gives the error).

    On PostgreSQL under psycopg 3 the batch takes four round trips: BEGIN, then two pipelines
    (``prepared.pipeline``): the lock timeout, the locks, the retries' lookup, the members, the
    direct peers' relations and the new rows' ids together; then the rows and their events
    together; then the commit (``tests/messaging/test_send_round_trips.py``).
    """
    pg = connection.vendor == "postgresql"
    plain = [(i, s) for i, s in together if _is_plain(s)] if pg else []
    with pipeline():
        # No lock wait of the batch (a conversation, a stream head, a read mark held by another
        # transaction) lasts longer than this: past it the batch is rolled back and each send
        # goes on its own, where only it waits.
        _batch_lock_timeout()
        convs_later = _core.lock_conversations_later({s.conversation_id for _, s in together})
        # After the locks: a retry of one of these sends that committed while the batch waited
        # for a lock is found here, instead of failing the whole batch at the INSERT.
        stored_later = _stored_keys_later([s for _, s in together])
        batch = (
            _core.PlainBatch(
                [
                    _core.PlainMessage(
                        conversation_id=s.conversation_id,  # type: ignore[arg-type]
                        sender_id=s.sender_id,
                        client_msg_id=s.client_msg_id,
                        kind=s.draft.kind,
                        text=s.draft.text,
                        body=s.draft.content,
                    )
                    for _, s in plain
                ]
            )
            if plain
            else None
        )
    stored = stored_later()
    convs = convs_later()
    results: list[tuple[int, SendResult]] = []
    left = [(i, s) for i, s in together if (s.sender_id, s.client_msg_id) in stored]  # retries
    if batch is not None:
        skip = {n for n, (_, s) in enumerate(plain) if (s.sender_id, s.client_msg_id) in stored}
        specs: list[core_events.EventSpec] = []
        with pipeline():
            done = batch.store(
                {s.conversation_id: convs[s.conversation_id] for _, s in plain if s.conversation_id in convs},
                skip,
            )
            for (index, s), one in zip(plain, done, strict=True):
                if one is None:
                    if (s.sender_id, s.client_msg_id) not in stored:  # refused: its own path says why
                        left.append((index, s))
                    continue
                r, msg = one
                specs.append(_core.new_message_spec(r, msg))
                shared.recipient_ids += [u for u in r.members if u != s.sender_id]
                results.append((index, SendResult(msg, created=True)))
            if len(plain) < len(together):  # others follow: one publish (one doorbell) for all, after
                shared.specs += specs
                specs = []
            published = core_events.publish_many_later(specs=specs) if specs else None
        if published is not None:
            published()
    done_indexes = {index for index, _ in plain} | {index for index, _ in left}
    for index, s in together:
        if index in done_indexes:
            continue
        try:
            with transaction.atomic():  # a savepoint: a refused reply or mention costs only itself
                result = _send(s.sender_id, s.client_msg_id, s.draft, s.conversation_id, None, shared=shared)
        except Exception as exc:
            if _lock_timed_out(exc):  # the batch waits one lock timeout at most, not one per send
                raise
            left.append((index, s))  # its own path says why
        else:
            results.append((index, result))
    if shared.specs:
        core_events.publish_many(specs=shared.specs)
    return results, left


def _lock_timed_out(exc: BaseException) -> bool:
    """Did a statement give up waiting for a lock (lock_not_available, 55P03)?"""
    cause = exc.__cause__
    return "55P03" in (getattr(cause, "sqlstate", None), getattr(cause, "pgcode", None))


def _is_plain(send: _Send) -> bool:
    draft = send.draft
    return (
        send.conversation_id is not None
        and draft.reply_to_seq is None
        and not draft.mentions
        and not draft.mention_all
        and draft.media_id is None
        and draft.contact_user_id is None
    )


_STORED_KEYS_SQL = """
SELECT m.sender_id, m.client_msg_id
  FROM unnest(%s::bigint[], %s::text[]) AS v(sender_id, client_msg_id)
  JOIN messaging_message m ON m.sender_id = v.sender_id AND m.client_msg_id = v.client_msg_id
 WHERE m.client_msg_id IS NOT NULL
"""


def _stored_keys_later(sends: Sequence[_Send]) -> Callable[[], set[tuple[int, str]]]:
    """Which of these (sender, client_msg_id) are stored already: one query, one index lookup
    each (the unique ``(sender, client_msg_id)``), read by the function returned (for
    ``prepared.pipeline``)."""
    if connection.vendor != "postgresql":
        found = set(
            Message.objects.filter(
                sender_id__in={s.sender_id for s in sends}, client_msg_id__in={s.client_msg_id for s in sends}
            ).values_list("sender_id", "client_msg_id")
        )
        return lambda: found
    cursor = connection.cursor()  # open until read
    bound = execute_bound(
        cursor, _STORED_KEYS_SQL, [[s.sender_id for s in sends], [s.client_msg_id for s in sends]]
    )

    def read() -> set[tuple[int, str]]:
        try:
            return {(row[0], row[1]) for row in bound.fetchall()}
        finally:
            cursor.close()

    return read


def _send(
    sender_id: int,
    client_msg_id: str,
    draft: content.Draft,
    conversation_id: int | None,
    to_user_id: int | None,
    *,
    shared: _Shared | None = None,
) -> SendResult:
    specs: list[core_events.EventSpec] = []
    claimed = False
    if to_user_id is not None:
        conv, created = _direct_conversation(sender_id=sender_id, peer_id=to_user_id)
        conversation_id = conv.pk
        r = _core.roster(conv.pk, user_id=sender_id)
        if created:  # (the pair's relation was checked by _direct_conversation)
            specs.append(
                core_events.EventSpec(
                    r.user_ids, events.CONVERSATION_NEW, {"conversation": events.conversation(r.conversation)}
                )
            )
    else:
        # The fast lane: one statement locks the conversation, checks membership, takes the
        # number and moves my read mark; a direct chat needs no member query (nobody leaves it).
        assert conversation_id is not None
        conv = _core.claim_seq(conversation_id, reader_id=sender_id)
        if conv.kind == Conversation.Kind.DIRECT:
            r = _core.direct_roster(conv)
        else:
            r = _core.Roster(conv, _core.active_members([conv.pk]).get(conv.pk, {}))
        _core.check_can_post(r, sender_id=sender_id)
        claimed = True
    member = r.members[sender_id]
    _check_mentions(r, draft, sender=member)
    reply_to = _reply_target(r, draft.reply_to_seq, member=member)
    body = draft.content
    if draft.media_id is not None:
        body = _resolve_media(draft, sender_id=sender_id)
    elif draft.contact_user_id is not None:
        body = _resolve_contact(draft, sender_id=sender_id)
    msg = _core.append(
        r, sender_id=sender_id, kind=draft.kind, text=draft.text, body=body, client_msg_id=client_msg_id,
        reply_to=reply_to, mentions=draft.mentions, mention_all=draft.mention_all, reader_id=sender_id,
        claimed=claimed,
    )  # fmt: skip
    specs.append(_core.new_message_spec(r, msg, reply_to=reply_to))
    recipient_ids = [u for u in r.members if u != sender_id]
    if shared is not None:  # message_send_many publishes the batch's events once, after the last
        shared.specs += specs
        shared.recipient_ids += recipient_ids
        return SendResult(msg, created=True)
    core_events.publish_many(specs=specs)
    notifications.schedule_on_commit(sender_id=sender_id, recipient_ids=recipient_ids)
    return SendResult(msg, created=True)


def message_forward(
    *,
    user_id: int,
    from_conversation_id: int,
    seqs: list[int],
    to_conversation_ids: list[int],
    client_msg_id: str | None = None,
) -> list[Message]:
    """Copy messages into other conversations the user belongs to, in order, marked forwarded.

    With ``client_msg_id``, a retried forward returns the copies already made.
    """
    if client_msg_id is not None:
        client_msg_id = content.check_client_msg_id(client_msg_id)
    seqs = list(dict.fromkeys(seqs))
    targets = sorted(set(to_conversation_ids))
    if (
        not seqs
        or len(seqs) > settings.MESSAGING_FORWARD_MAX
        or not targets
        or len(targets) > settings.MESSAGING_FORWARD_TARGETS_MAX
    ):
        raise ValidationFailed(_("Forward 1-%(m)d messages to 1-%(t)d conversations.") % {
            "m": settings.MESSAGING_FORWARD_MAX, "t": settings.MESSAGING_FORWARD_TARGETS_MAX})  # fmt: skip
    try:
        with transaction.atomic():
            return _forward(user_id, from_conversation_id, seqs, targets, client_msg_id)
    except IntegrityError:
        assert client_msg_id is not None
        copies = list(
            Message.objects.filter(
                sender_id=user_id, client_msg_id__startswith=f"{_fwd_prefix(client_msg_id)}"
            ).order_by("id")
        )
        if not copies:
            raise Conflict(_("The forward could not be stored; retry."), code="retry") from None
        return copies


def _fwd_prefix(client_msg_id: str) -> str:
    return "fwd-" + hashlib.sha256(client_msg_id.encode()).hexdigest()[:24] + ":"


def _forward(
    user_id: int, source_id: int, seqs: list[int], targets: list[int], client_msg_id: str | None
) -> list[Message]:
    source_member = Member.objects.filter(
        conversation_id=source_id, user_id=user_id, left_at__isnull=True
    ).first()
    if source_member is None:
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    originals = {
        m.seq: m
        for m in Message.objects.filter(
            conversation_id=source_id,
            seq__in=seqs,
            seq__gt=source_member.joined_seq,
            recalled_at__isnull=True,
        ).exclude(kind=Message.Kind.SYSTEM)
    }
    money = [s for s, m in originals.items() if m.kind in content.PAYMENT_KINDS]
    if money:
        raise ValidationFailed(
            _("Transfers and red packets cannot be forwarded."),
            code="forward_forbidden",
            fields={"seqs": [str(sorted(money))]},
        )
    missing = [s for s in seqs if s not in originals]
    if not missing:
        missing = _media_recalled_meanwhile(source_id, originals)
    if missing:
        raise ValidationFailed(
            _("Some messages cannot be forwarded."), code="bad_seq", fields={"seqs": [str(missing)]}
        )
    locked = _core.lock_conversations(targets)
    members = _core.active_members(targets)
    specs: list[core_events.EventSpec] = []
    copies: list[Message] = []
    recipients: set[int] = set()
    for conv_id in targets:
        if conv_id not in locked:
            raise NotFound(_("No such conversation."), code="conversation_not_found")
        r = _core.Roster(locked[conv_id], members.get(conv_id, {}))
        _core.check_can_post(r, sender_id=user_id)
        for index, seq in enumerate(seqs):
            original = originals[seq]
            cmid = f"{_fwd_prefix(client_msg_id)}{conv_id}:{index}" if client_msg_id else None
            copy = _core.append(
                r, sender_id=user_id, kind=original.kind, text=original.text, body=original.content,
                client_msg_id=cmid, forwarded=True, reader_id=user_id,
            )  # fmt: skip
            copies.append(copy)
            specs.append(_core.new_message_spec(r, copy))
        recipients |= set(r.members) - {user_id}
    core_events.publish_many(specs=specs)
    notifications.schedule_on_commit(sender_id=user_id, recipient_ids=sorted(recipients))
    return copies


def _media_recalled_meanwhile(source_id: int, originals: dict[int, Message]) -> list[int]:
    """Lock the uploads the copies will carry (FOR KEY SHARE, as a send does) and return the seqs
    whose upload a recall's purge deleted after ``originals`` was read (unlocked).

    A copy of a message recalled meanwhile keeps its media when the upload is still there: the
    lock makes the purge wait for this forward and then count the copy. An upload missing for
    another reason (its owner's account deleted) leaves the copy as it was before.
    """
    by_media: dict[str, list[int]] = {}
    for seq, original in originals.items():
        media_id = original.content.get("media_id") if isinstance(original.content, dict) else None
        if media_id:
            by_media.setdefault(str(media_id), []).append(seq)
    if not by_media:
        return []
    present = attachments_lock_shared(media_ids=by_media)
    gone = [seq for media_id, seqs in by_media.items() if media_id not in present for seq in seqs]
    if not gone:
        return []
    return sorted(
        Message.objects.filter(
            conversation_id=source_id, seq__in=gone, recalled_at__isnull=False
        ).values_list("seq", flat=True)
    )


def _message_for_member(
    conversation_id: int, seq: int, *, user_id: int, lock: bool = False
) -> tuple[_core.Roster, Message]:
    r = _core.roster(conversation_id, user_id=user_id)
    member = r.members[user_id]
    qs = Message.objects.filter(conversation_id=conversation_id, seq=seq, seq__gt=member.joined_seq)
    msg = (qs.select_for_update() if lock else qs).first()
    if msg is None:
        raise NotFound(_("No such message."), code="message_not_found")
    return r, msg


@transaction.atomic
def message_recall(*, user_id: int, conversation_id: int, seq: int) -> Message:
    """Replace a message by a "recalled" notice on every device.

    The sender may recall within ``MESSAGING_RECALL_SECONDS``; in a group the owner may recall
    anyone's message and an admin any plain member's, at any time. The text and content are
    erased from the message row; after commit, tasks redact the stored events and delete the
    upload of a media message (``media.attachment_purge_recalled``: kept while a message that is
    not recalled, such as a forwarded copy, still carries it). Recalling twice is a no-op.
    """
    seq = content.positive_int(seq, "seq")
    r, msg = _message_for_member(conversation_id, seq, user_id=user_id, lock=True)
    if msg.recalled_at is not None:
        return msg
    if msg.kind == Message.Kind.SYSTEM:
        raise Forbidden(_("System messages cannot be recalled."), code="recall_forbidden")
    if msg.kind in content.PAYMENT_KINDS:  # money has moved: the bubble stays, as in WeChat
        raise Forbidden(_("Transfers and red packets cannot be recalled."), code="recall_forbidden")
    me = r.members[user_id]
    allowed = False
    if msg.sender_id == user_id:
        allowed = timezone.now() - msg.created_at <= timedelta(seconds=settings.MESSAGING_RECALL_SECONDS)
        if not allowed and not me.is_manager:
            raise Forbidden(_("Messages can be recalled within 2 minutes."), code="recall_expired")
    if not allowed and r.conversation.is_group:
        sender = r.members.get(msg.sender_id) if msg.sender_id else None
        sender_role = sender.role if sender else Member.Role.MEMBER
        allowed = me.role == Member.Role.OWNER or (
            me.role == Member.Role.ADMIN and sender_role == Member.Role.MEMBER
        )
    if not allowed:
        raise Forbidden(_("You cannot recall this message."), code="recall_forbidden")
    media_id = msg.content.get("media_id") if isinstance(msg.content, dict) else None
    msg.recalled_at = timezone.now()
    msg.recalled_by_id = user_id
    msg.text, msg.content, msg.mentions, msg.search = "", {}, [], None
    msg.save(update_fields=["recalled_at", "recalled_by", "text", "content", "mentions", "search"])
    # The stored events are redacted after commit, by a task: the scan may be long for an old
    # message in a big group, and must not hold this conversation's lock (every send waits on it).
    message_id = msg.id
    transaction.on_commit(lambda: _redact_later(message_id))
    if media_id:  # the upload's files go too, unless another message still carries them
        transaction.on_commit(lambda: _purge_media_later(str(media_id)))
    core_events.publish(user_ids=r.user_ids, type=events.MESSAGE_RECALLED, data=events.recall(msg))
    return msg


def _redact_later(message_id: int) -> None:
    from ..tasks import redact_recalled  # tasks import services: import at call time

    redact_recalled.delay(message_id)


def _purge_media_later(media_id: str) -> None:
    from ..tasks import purge_recalled_media

    purge_recalled_media.delay(media_id)


def message_events_redact(*, message_id: int) -> int:
    """Erase a recalled message's text from events already stored: its own ``message.new`` and
    the quote in replies to it, in the stream of everyone who was a member when it was sent or
    since (members who left too), so that a device that syncs later never receives the text.
    Idempotent (a message not recalled, or gone, changes nothing); returns the events rewritten.
    Events are matched by content; ``created_at`` only narrows the scan, with a margin for
    clocks of different servers."""
    msg = Message.objects.filter(pk=message_id, recalled_at__isnull=False).first()
    if msg is None:
        return 0
    since = msg.created_at - REDACT_CLOCK_MARGIN
    readers = Member.objects.filter(conversation_id=msg.conversation_id).exclude(left_at__lt=since)
    user_ids = list(readers.values_list("user_id", flat=True))
    recalled, quote = events.message(msg), events.quote(msg)
    with transaction.atomic():
        n = core_events.redact(user_ids=user_ids, type=events.MESSAGE_NEW, since=since,
                               match={"id": msg.id}, rewrite=lambda data: recalled)  # fmt: skip
        n += core_events.redact(user_ids=user_ids, type=events.MESSAGE_NEW, since=since,
                                match={"reply_to": {"id": msg.id}}, rewrite=lambda data: {**data, "reply_to": quote})  # fmt: skip
    return n


@transaction.atomic
def message_hide(*, user_id: int, conversation_id: int, seq: int) -> None:
    """Delete a message for me only (my devices drop it; the others keep it)."""
    seq = content.positive_int(seq, "seq")
    member = Member.objects.filter(
        conversation_id=conversation_id, user_id=user_id, left_at__isnull=True
    ).first()
    msg = (
        Message.objects.filter(conversation_id=conversation_id, seq=seq, seq__gt=member.joined_seq).first()
        if member
        else None
    )
    if msg is None:
        raise NotFound(_("No such message."), code="message_not_found")
    _hidden, created = HiddenMessage.objects.get_or_create(
        user_id=user_id, message=msg, defaults={"conversation_id": msg.conversation_id, "seq": msg.seq}
    )
    if created:
        core_events.publish(
            user_ids=[user_id],
            type=events.MESSAGE_DELETED,
            data={"conversation_id": conversation_id, "seq": seq},
        )


@transaction.atomic
def conversation_mark_read(*, user_id: int, conversation_id: int, seq: int) -> int:
    """Move my read mark to ``seq`` (never back). My other devices learn it; in a direct chat the
    peer too (a read receipt). Returns the read mark."""
    seq = content.positive_int(seq, "seq")
    # My row locked first (the bump writes it anyway), the conversation read after: a payment's
    # notice line hidden from me (money.py) either waits for this read and sees its mark, or
    # committed before the lock was granted and this read sees it in last_seq.
    member = (
        Member.objects.select_for_update()
        .filter(conversation_id=conversation_id, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    conv = Conversation.objects.only("kind", "last_seq", "user_low_id", "user_high_id").get(
        pk=conversation_id
    )
    if seq > conv.last_seq:
        raise ValidationFailed(
            _("There is no message with this number yet."),
            code="bad_seq",
            fields={"seq": [str(conv.last_seq)]},
        )
    if (
        seq < conv.last_seq
        and member.last_read_seq < conv.last_seq
        and not selectors.visible_after(member, seq=max(seq, member.last_read_seq))
    ):
        # Everything after it is hidden from me (deleted for me, or a payment's notice line about
        # a bubble from before I joined): I have read all I can see, so nothing stays unread.
        seq = conv.last_seq
    if seq <= member.last_read_seq or not _core.bump_read(member.pk, seq):
        return max(member.last_read_seq, seq)
    to = [user_id]
    if conv.kind == Conversation.Kind.DIRECT:
        to.append(conv.user_high_id if conv.user_low_id == user_id else conv.user_low_id)
    core_events.publish(
        user_ids=to, type=events.CONVERSATION_READ,
        data=events.read(conversation_id=conv.pk, user_id=user_id, last_read_seq=seq),
    )  # fmt: skip
    return seq


def typing_notify(*, user_id: int, conversation_id: int) -> None:
    """Tell the other members' devices that the user is typing (ephemeral, never stored).

    Sent at most once per ``MESSAGING_TYPING_INTERVAL`` seconds per user and conversation."""
    conversation_id = content.positive_int(conversation_id, "conversation_id")
    member_ids = list(
        Member.objects.filter(conversation_id=conversation_id, left_at__isnull=True).values_list(
            "user_id", flat=True
        )
    )
    if user_id not in member_ids:
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    if not realtime_fanout.throttle(
        f"typing:{user_id}:{conversation_id}", settings.MESSAGING_TYPING_INTERVAL
    ):
        return
    realtime_fanout.ephemeral(
        user_ids=[u for u in member_ids if u != user_id],
        frame={"type": events.TYPING, "data": {"conversation_id": conversation_id, "user_id": user_id}},
    )
