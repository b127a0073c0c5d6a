"""Red packets: sending, grabbing (exactly once per member, never more than the total), refunds.

Lock order: the packet row, then ledger accounts (ascending ids), then event stream heads.
Every grab of one packet queues on the packet row; the money waits in the sender's
red-packet escrow account, so grabs of different senders' packets never share a hot row.
"""

from __future__ import annotations

import random
import secrets

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import Conflict, NotFound, ValidationFailed

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


def red_packet_send(
    *,
    sender_id: int,
    kind: str,
    total_amount: int,
    count: int,
    audience_ids: list[int],
    pin: str,
    greeting: str = "",
    currency: str | None = None,
) -> RedPacket:
    """Put money in a red packet for an audience (for now: friends of the sender, given by id)."""
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    _check_amount(total_amount, currency)
    audience = sorted(set(audience_ids) - {sender_id})
    if kind not in RedPacket.Kind.values:
        raise ValidationFailed(fields={"kind": [_("normal or lucky")]})
    if not audience:
        raise ValidationFailed(fields={"recipient_ids": [_("Name at least one recipient.")]})
    if not 1 <= count <= min(len(audience), settings.PAYMENTS_RED_PACKET_MAX_COUNT):
        raise ValidationFailed(
            fields={"count": [_("Between 1 and the number of recipients.")]}, code="invalid_count"
        )
    if total_amount > settings.PAYMENTS_RED_PACKET_MAX_AMOUNT:
        raise ValidationFailed(fields={"total_amount": [_("Over the red packet maximum.")]})
    if total_amount < count:
        raise ValidationFailed(fields={"total_amount": [_("At least 0.01 per share.")]})
    if kind == RedPacket.Kind.NORMAL and total_amount % count:
        raise ValidationFailed(fields={"total_amount": [_("A normal red packet splits into equal shares.")]})
    friends = account_selectors.friend_ids(user_id=sender_id)
    if not set(audience) <= friends:
        raise ValidationFailed(
            fields={"recipient_ids": [_("Only friends (group chats come later).")]}, code="not_friends"
        )
    pin_verify(user_id=sender_id, pin=pin)
    return _send(
        sender_id=sender_id,
        kind=kind,
        total_amount=total_amount,
        count=count,
        audience=audience,
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
    audience: list[int],
    greeting: str,
    currency: str,
) -> RedPacket:
    payer = _lock_settings(sender_id)
    _check_limits(payer=payer, amount=total_amount, currency=currency)
    packet = RedPacket.objects.create(
        sender_id=sender_id,
        kind=kind,
        currency=currency,
        total_amount=total_amount,
        count=count,
        remaining_amount=total_amount,
        remaining_count=count,
        greeting=greeting,
        audience=audience,
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
    core_events.publish(
        user_ids=[sender_id, *audience], type=events.RED_PACKET_SENT, data=events.red_packet_payload(packet)
    )
    return packet


def red_packet_grab(*, user_id: int, packet_id: int) -> RedPacketGrab:
    """Grab a share. Exactly once per member; ``red_packet_empty`` when all are taken."""
    packet = RedPacket.objects.filter(pk=packet_id).only("audience", "remaining_count", "sender_id").first()
    if packet is None or user_id not in packet.audience:
        raise NotFound()
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
    core_events.publish(
        user_ids=sorted({packet.sender_id, user_id}),
        type=events.RED_PACKET_GRABBED,
        data=events.red_packet_grab_payload(packet, grab),
    )
    return grab


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
    core_events.publish(
        user_ids=[packet.sender_id],
        type=events.RED_PACKET_REFUNDED,
        data={**events.red_packet_payload(packet), "refunded_amount": refund},
    )
    return True


def red_packets_refund_expired(*, batch: int = 500) -> int:
    ids = list(
        RedPacket.objects.filter(status=RedPacket.Status.ACTIVE, expires_at__lte=timezone.now())
        .order_by("expires_at")
        .values_list("id", flat=True)[:batch]
    )
    return sum(red_packet_refund_if_expired(packet_id=i) for i in ids)
