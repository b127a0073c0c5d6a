"""Red packets in chats: sending, grabbing (exactly once per member, never more than the total),
refunds.

A packet is sent into a conversation (a group, or a direct chat) as a ``red_packet`` message, in
the same transaction as the money. Who may grab is the chat's business, asked at grab time
(``messaging.selectors.payment_message_access``): in a group, every active member who can see
the message (the sender too, as in WeChat); in a direct chat, the peer. A member who left, a
newcomer who joined after it, or a stranger gets 404.

Lock order: the packet row (or the payer's settings when sending), then ledger accounts
(ascending ids), then the conversation row (sending only: grabs never lock the chat), then event
stream heads. Every grab of one packet queues on the packet row; the money waits in the sender's
red-packet escrow account, so grabs of different senders' packets never share a hot row.
"""

from __future__ import annotations

import random
import secrets

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from messaging import selectors as chat_selectors
from messaging import services as chat_services
from superapp.core import events as core_events
from superapp.core.errors import Conflict, Forbidden, NotFound, ValidationFailed

from . import events
from .ledger import Leg, account_for, ledger_post, money_atomic, wallet_for
from .models import AccountKind, JournalEntry, RedPacket, RedPacketGrab
from .services import _check_amount, _check_limits, _lock_settings, pin_verify

_rng = secrets.SystemRandom()


def next_share(*, kind: str, remaining_amount: int, remaining_count: int, rng: random.Random = _rng) -> int:
    """The next grab's share (minor units).

    Normal: equal shares (the total is a multiple of the count). Lucky: uniform between 1 (0.01)
    and twice the mean of what remains, leaving at least 1 for each share still to come; the
    last share takes the rest. No share is ever 0 and the shares sum exactly to the total.
    """
    if remaining_count < 1 or remaining_amount < remaining_count:
        raise ValueError("nothing left to share")
    if remaining_count == 1:
        return remaining_amount
    if kind == RedPacket.Kind.NORMAL:
        return remaining_amount // remaining_count
    upper = min(2 * remaining_amount // remaining_count, remaining_amount - (remaining_count - 1))
    return rng.randint(1, max(1, upper))


def _check_count(count: int, *, is_group: bool, members: int) -> None:
    """A group packet has at most one share per member; a direct chat's has one (the peer's)."""
    if is_group and count > members:
        raise ValidationFailed(
            _("At most one share per member of the group (%(n)d).") % {"n": members},
            code="invalid_count",
            fields={"count": [_("At most the number of members.")]},
        )
    if not is_group and count != 1:
        raise ValidationFailed(
            _("A red packet in a one-to-one chat has one share."),
            code="invalid_count",
            fields={"count": [_("1 in a one-to-one chat.")]},
        )


def red_packet_send(
    *,
    sender_id: int,
    kind: str,
    total_amount: int,
    count: int,
    pin: str,
    conversation_id: int | None = None,
    to_user_id: int | None = None,
    greeting: str = "",
    currency: str | None = None,
) -> RedPacket:
    """Put money in a red packet sent into a conversation (or the direct chat with
    ``to_user_id``, created on first use), shown there as a ``red_packet`` message.

    The sender must be allowed to post there (messaging's rules: an active member; in a direct
    chat, friends or a peer who accepts strangers, no block). ``count``: 1 in a direct chat, at
    most the group's member count (and ``PAYMENTS_RED_PACKET_MAX_COUNT``) in a group.
    """
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    _check_amount(total_amount, currency)
    if kind not in RedPacket.Kind.values:
        raise ValidationFailed(fields={"kind": [_("normal or lucky")]})
    if not isinstance(greeting, str) or len(greeting) > 100:
        raise ValidationFailed(fields={"greeting": [_("At most 100 characters.")]})
    if type(count) is not int or not 1 <= count <= settings.PAYMENTS_RED_PACKET_MAX_COUNT:
        raise ValidationFailed(
            fields={"count": [_("Between 1 and %(max)d.") % {"max": settings.PAYMENTS_RED_PACKET_MAX_COUNT}]},
            code="invalid_count",
        )
    if total_amount > settings.PAYMENTS_RED_PACKET_MAX_AMOUNT:
        raise ValidationFailed(fields={"total_amount": [_("Over the red packet maximum.")]})
    if total_amount < count:
        raise ValidationFailed(fields={"total_amount": [_("At least 0.01 per share.")]})
    if kind == RedPacket.Kind.NORMAL and total_amount % count:
        raise ValidationFailed(fields={"total_amount": [_("A normal red packet splits into equal shares.")]})
    # Refused before the PIN is checked; checked again under the conversation's lock when sending.
    target = chat_selectors.send_check(
        sender_id=sender_id, conversation_id=conversation_id, to_user_id=to_user_id
    )
    _check_count(count, is_group=target.is_group, members=target.member_count)
    pin_verify(user_id=sender_id, pin=pin)
    return _send(
        sender_id=sender_id,
        kind=kind,
        total_amount=total_amount,
        count=count,
        conversation_id=conversation_id,
        to_user_id=to_user_id,
        greeting=greeting,
        currency=currency,
    )


@money_atomic
def _send(
    *,
    sender_id: int,
    kind: str,
    total_amount: int,
    count: int,
    conversation_id: int | None,
    to_user_id: int | None,
    greeting: str,
    currency: str,
) -> RedPacket:
    payer = _lock_settings(sender_id)
    _check_limits(payer=payer, amount=total_amount, currency=currency)
    packet = RedPacket.objects.create(
        sender_id=sender_id,
        conversation_id=conversation_id,
        kind=kind,
        currency=currency,
        total_amount=total_amount,
        count=count,
        remaining_amount=total_amount,
        remaining_count=count,
        greeting=greeting,
        expires_at=timezone.now() + settings.PAYMENTS_RED_PACKET_TTL,
    )
    ledger_post(
        kind=JournalEntry.Kind.RED_PACKET_SEND,
        reference=f"red_packet:{packet.id}:send",
        memo=greeting,
        legs=[
            Leg(wallet_for(user_id=sender_id, currency=currency), -total_amount),
            Leg(
                account_for(kind=AccountKind.RED_PACKET_ESCROW, owner_id=sender_id, currency=currency),
                total_amount,
            ),
        ],
    )
    # After the ledger: locks the conversation, stores the message, publishes it to the members.
    posted = chat_services.payment_message_post(
        sender_id=sender_id,
        kind="red_packet",
        object_id=packet.id,
        body=events.red_packet_bubble(packet),
        conversation_id=conversation_id,
        to_user_id=to_user_id,
    )
    # The members as of now, under the conversation's lock (someone may have left since the
    # check before the PIN): refusing here rolls the money and the message back together.
    _check_count(count, is_group=posted.is_group, members=len(posted.member_ids))
    if packet.conversation_id is None:  # a direct chat named by the peer (maybe made just now)
        packet.conversation_id = posted.message.conversation_id
        packet.save(update_fields=["conversation_id"])
    # The sender is a member who just got the message: their stream head is locked already.
    core_events.publish(
        user_ids=[sender_id], type=events.RED_PACKET_SENT, data=events.red_packet_payload(packet)
    )
    return packet


def red_packet_grab(*, user_id: int, packet_id: int) -> RedPacketGrab:
    """Grab a share. Exactly once per member; ``red_packet_empty`` when all are taken.

    Who may: an active member of the packet's chat who can see its message (404 for anyone
    else, also a member who left); in a direct chat not the sender (403 ``own_red_packet``).
    Membership is read before the packet's lock, not under it (every grab of a popular packet
    queues on that lock): a member leaving at that very moment grabs as if just before leaving.
    """
    packet = RedPacket.objects.filter(pk=packet_id).only("remaining_count", "sender_id").first()
    if packet is None:
        raise NotFound()
    access = chat_selectors.payment_message_access(
        user_id=user_id, sender_id=packet.sender_id, kind="red_packet", object_id=packet.pk
    )
    if access is None:
        raise NotFound()
    if not access.is_group and user_id == packet.sender_id:
        raise Forbidden(_("Your red packet is for the other person."), code="own_red_packet")
    if packet.remaining_count == 0:  # cheap early answer for the crowd that arrives late
        raise Conflict(_("All the shares were taken."), code="red_packet_empty")
    return _grab(user_id=user_id, packet_id=packet_id)


@money_atomic
def _grab(*, user_id: int, packet_id: int) -> RedPacketGrab:
    packet = RedPacket.objects.select_for_update().get(pk=packet_id)
    if RedPacketGrab.objects.filter(packet=packet, user_id=user_id).exists():
        raise Conflict(_("You already grabbed this red packet."), code="already_grabbed")
    if packet.status == RedPacket.Status.REFUNDED or packet.expires_at <= timezone.now():
        raise Conflict(_("This red packet has expired."), code="red_packet_expired")
    if packet.remaining_count == 0:
        raise Conflict(_("All the shares were taken."), code="red_packet_empty")
    share = next_share(
        kind=packet.kind, remaining_amount=packet.remaining_amount, remaining_count=packet.remaining_count
    )
    grab = RedPacketGrab.objects.create(packet=packet, user_id=user_id, amount=share)
    ledger_post(
        kind=JournalEntry.Kind.RED_PACKET_GRAB,
        reference=f"red_packet:{packet.id}:grab:{user_id}",
        legs=[
            Leg(
                account_for(
                    kind=AccountKind.RED_PACKET_ESCROW, owner_id=packet.sender_id, currency=packet.currency
                ),
                -share,
            ),
            Leg(wallet_for(user_id=user_id, currency=packet.currency), share),
        ],
    )
    packet.remaining_amount -= share
    packet.remaining_count -= 1
    fields = ["remaining_amount", "remaining_count"]
    if packet.remaining_count == 0:
        packet.status = RedPacket.Status.FINISHED
        packet.resolved_at = timezone.now()
        fields += ["status", "resolved_at"]
    packet.save(update_fields=fields)
    notice = core_events.EventSpec(
        user_ids=sorted({packet.sender_id, user_id}),
        type=events.RED_PACKET_GRABBED,
        data=events.red_packet_grab_payload(packet, grab),
    )
    if packet.status == RedPacket.Status.FINISHED:
        # The last share: the bubble says so on every member's device (the conversation's lock is
        # taken after the ledger accounts, as everywhere: docs/payments.md).
        _bubble_status(packet, also_publish=[notice])
    else:
        core_events.publish_many(specs=[notice])
    return grab


def _bubble_status(packet: RedPacket, *, also_publish: list[core_events.EventSpec]) -> None:
    """Show the packet's new status on its chat message (``message.updated`` to every member) and
    publish ``also_publish`` with it. Caller holds the packet's row and its ledger accounts."""
    chat_services.payment_message_update(
        sender_id=packet.sender_id,
        kind="red_packet",
        object_id=packet.id,
        changes={"status": events.BUBBLE_STATUS[packet.status]},
        also_publish=also_publish,
    )


@money_atomic
def red_packet_refund_if_expired(*, packet_id: int) -> bool:
    """Return an expired packet's unclaimed remainder to its sender (safe to run twice)."""
    packet = RedPacket.objects.select_for_update().filter(pk=packet_id).first()
    if packet is None or packet.status != RedPacket.Status.ACTIVE or packet.expires_at > timezone.now():
        return False
    refund = packet.remaining_amount
    ledger_post(
        kind=JournalEntry.Kind.RED_PACKET_REFUND,
        reference=f"red_packet:{packet.id}:refund",
        legs=[
            Leg(
                account_for(
                    kind=AccountKind.RED_PACKET_ESCROW, owner_id=packet.sender_id, currency=packet.currency
                ),
                -refund,
            ),
            Leg(wallet_for(user_id=packet.sender_id, currency=packet.currency), refund),
        ],
    )
    packet.status = RedPacket.Status.REFUNDED
    packet.resolved_at = timezone.now()
    packet.save(update_fields=["status", "resolved_at"])
    _bubble_status(
        packet,
        also_publish=[
            core_events.EventSpec(
                user_ids=[packet.sender_id],
                type=events.RED_PACKET_REFUNDED,
                data={**events.red_packet_payload(packet), "refunded_amount": refund},
            )
        ],
    )
    return True


def red_packets_refund_expired(*, batch: int = 500) -> int:
    ids = list(
        RedPacket.objects.filter(status=RedPacket.Status.ACTIVE, expires_at__lte=timezone.now())
        .order_by("expires_at")
        .values_list("id", flat=True)[:batch]
    )
    return sum(red_packet_refund_if_expired(packet_id=i) for i in ids)
