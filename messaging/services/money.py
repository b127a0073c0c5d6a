"""Chat messages of money movements: kinds ``transfer`` and ``red_packet``, written by payments only.

Payments calls these inside its money transaction, after its ledger postings, so that a payment
and its message commit (or roll back) together: no transfer without its bubble, no bubble without
the money. A client cannot send, recall or forward these kinds (``content.PAYMENT_KINDS``).

Lock order of a money transaction (docs/payments.md): the business row, the ledger accounts,
then **the conversation row** (here), then the event stream heads (here too, last, in one
``publish_many`` with the caller's own events). Messaging's other paths lock the conversation,
then the heads: the same order, so the two never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils.translation import gettext as _

from superapp.core import events as core_events
from superapp.core.errors import NotFound, ValidationFailed

from .. import content, events, notifications, selectors
from ..models import Conversation, Member, Message
from . import _core
from .messages import _direct_conversation


@dataclass(frozen=True)
class PaymentPost:
    """A payment's message as stored, and who got it (the active members, the sender included)."""

    message: Message
    member_ids: list[int]
    is_group: bool


def _in_transaction(kind: str) -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("payment messages are written inside the payment's transaction")
    if kind not in content.PAYMENT_KINDS:
        raise ValueError(f"not a payment kind: {kind!r}")


def payment_message_post(
    *,
    sender_id: int,
    kind: str,
    object_id: int,
    body: dict[str, Any],
    conversation_id: int | None = None,
    to_user_id: int | None = None,
    receiver_id: int | None = None,
    also_publish: Sequence[core_events.EventSpec] = (),
) -> PaymentPost:
    """Post the message of a new payment (``kind`` transfer or red_packet, ``object_id`` its id)
    in a conversation, or in the direct chat with ``to_user_id`` (created on first use, as a
    first message creates it), with the same rules as a message: 404 unless an active member,
    and in a direct chat 403 ``blocked`` / ``not_friends``.

    Must run inside the caller's (money) transaction; a later failure there rolls the message
    back too. Locks the conversation row (in an existing conversation, in the same statement that
    checks the membership and takes the message's number), stores the message (``client_msg_id`` =
    ``<kind>/<object_id>``: one message per payment, by the unique constraint), and publishes
    ``message.new`` (and ``conversation.new`` for a new direct chat) with ``also_publish`` in
    one ``publish_many``, so every stream head is locked once, in id order. Offline members get
    a push ("[Transfer]", "[Red Packet]") after commit.

    ``receiver_id``: the one member the payment is for (a transfer to a member of a group): must
    be an active member too, checked under the conversation's lock from the roster the message
    needs anyway (no statement more), else 404 ``member_not_found``; and in a group the rule
    between the two is run again here (``selectors.group_payment_rule``, one statement: 403
    ``blocked``, 404 ``user_not_found``), as a direct chat's rule is run again under its lock,
    so that a block committed while the caller judged the PIN and moved the money still refuses
    it. Either way the caller's transaction, money included, rolls back.
    """
    _in_transaction(kind)
    if (conversation_id is None) == (to_user_id is None):
        raise ValidationFailed(
            _("Give conversation_id or to_user_id."),
            fields={"conversation_id": [_("One of the two is required.")]},
        )
    specs: list[core_events.EventSpec] = []
    claimed = False
    if to_user_id is not None and to_user_id != sender_id:
        # The direct chat usually exists (a transfer follows a chat): then take the fast lane
        # below, which locks it and checks the rule again, as for any conversation.
        conversation_id = _direct_conversation_id(sender_id, to_user_id)
        if conversation_id is not None:
            to_user_id = None
    if to_user_id is not None:
        conv, created = _direct_conversation(sender_id=sender_id, peer_id=to_user_id)
        r = _core.roster(conv.pk, user_id=sender_id)
        if created:
            specs.append(
                core_events.EventSpec(
                    r.user_ids, events.CONVERSATION_NEW, {"conversation": events.conversation(r.conversation)}
                )
            )
    else:
        # message_send's fast lane: one statement locks the conversation, checks that the sender
        # is an active member, takes the number and moves the sender's read mark; a direct chat
        # needs no member query (nobody leaves it).
        assert conversation_id is not None
        conv = _core.claim_seq(conversation_id, reader_id=sender_id)
        if conv.kind == Conversation.Kind.DIRECT:
            r = _core.direct_roster(conv)
        else:
            r = _core.Roster(conv, _core.active_members([conv.pk]).get(conv.pk, {}))
        _core.check_can_post(r, sender_id=sender_id)
        claimed = True
    if receiver_id is not None:
        if receiver_id not in r.members:
            raise NotFound(_("Not a member."), code="member_not_found")
        if r.conversation.is_group:
            selectors.group_payment_rule(sender_id=sender_id, receiver_id=receiver_id)
    msg = _core.append(
        r,
        sender_id=sender_id,
        kind=kind,
        body=body,
        client_msg_id=content.payment_client_msg_id(kind, object_id),
        reader_id=sender_id,
        claimed=claimed,
    )
    specs.append(_core.new_message_spec(r, msg))
    core_events.publish_many(specs=[*specs, *also_publish])
    notifications.schedule_on_commit(
        sender_id=sender_id, recipient_ids=[u for u in r.members if u != sender_id]
    )
    return PaymentPost(message=msg, member_ids=r.user_ids, is_group=r.conversation.is_group)


def _direct_conversation_id(user_id: int, peer_id: int) -> int | None:
    """The id of the pair's direct chat, or None (one plain statement: the ORM's query building
    cost three times the query here)."""
    low, high = sorted((user_id, peer_id))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM messaging_conversation WHERE kind = %s AND user_low_id = %s AND user_high_id = %s",
            [Conversation.Kind.DIRECT.value, low, high],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def payment_message_update(
    *,
    sender_id: int,
    kind: str,
    object_id: int,
    changes: dict[str, Any],
    notice: str | None = None,
    actor_id: int | None = None,
    also_publish: Sequence[core_events.EventSpec] = (),
) -> Message | None:
    """Change the content of a payment's message (a transfer accepted or refunded): the devices
    of every member who can see it get ``message.updated``, and history shows the new state.

    ``notice``: also add a system line (``content.event`` = notice, with ``<kind>_id`` and the
    bubble's ``message_seq``), like WeChat's "Transfer accepted"; ``actor_id`` is who caused it
    (None: the server, e.g. an expiry). Must run inside the caller's (money) transaction; locks
    the conversation row, then publishes everything with ``also_publish`` in one
    ``publish_many``. Returns None, publishing only ``also_publish``, when the payment has no
    message (made before payments were shown in chats).

    Who is told: the active members who joined before the bubble (``joined_seq < seq``), the
    ones whose history shows it. A member who joined a group after it learns nothing of it: no
    ``message.updated`` (it would carry the amount and the note), no ``message.new`` of the
    notice line, and their history hides that line too (``selectors.about_unseen``), so events
    and history agree. Direct chats: ``joined_seq`` is 0, both members are told.
    """
    _in_transaction(kind)
    key = content.payment_client_msg_id(kind, object_id)
    conversation_id = (
        Message.objects.filter(sender_id=sender_id, client_msg_id=key)
        .values_list("conversation_id", flat=True)
        .first()
    )
    if conversation_id is None:
        if also_publish:
            core_events.publish_many(specs=list(also_publish))
        return None
    conv: Conversation = _core.lock_conversations([conversation_id])[conversation_id]
    r = _core.Roster(conv, _core.active_members([conv.pk]).get(conv.pk, {}))
    msg = Message.objects.get(sender_id=sender_id, client_msg_id=key)
    msg.content = {**msg.content, **changes}
    msg.save(update_fields=["content"])
    viewers = sorted(u for u, m in r.members.items() if m.joined_seq < msg.seq)
    specs = [core_events.EventSpec(viewers, events.MESSAGE_UPDATED, events.message(msg))]
    if notice is not None:
        line = _core.system_message(
            r, actor_id=actor_id, event=notice, **{f"{kind}_id": object_id, "message_seq": msg.seq}
        )
        specs.append(core_events.EventSpec(viewers, events.MESSAGE_NEW, events.message(line)))
        # The members who cannot see the line and had read everything before it have read it too:
        # their read mark moves past it (their unread counts leave it out either way,
        # selectors.hidden_unread, but a mark short of the last seq would stay there for good).
        # The conversation row is locked: no message came between. Their rows are locked first,
        # so a read in progress (conversation_mark_read locks the row too) is waited for and its
        # mark seen; a read that comes after finds the line and moves past it itself.
        unseeing = [m.pk for u, m in r.members.items() if m.joined_seq >= msg.seq]
        if unseeing:
            marks = Member.objects.select_for_update().filter(pk__in=unseeing).order_by("pk")
            caught_up = [pk for pk, mark in marks.values_list("pk", "last_read_seq") if mark == line.seq - 1]
            if caught_up:
                Member.objects.filter(pk__in=caught_up).update(last_read_seq=line.seq)
    core_events.publish_many(specs=[*specs, *also_publish])
    return msg
