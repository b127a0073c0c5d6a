"""Red packets in chats: sending, grabbing (exactly once per member, never more than the total),
refunds.

A packet is sent into a conversation (a group, or a direct chat) as a ``red_packet`` message, in
the same transaction as the money. Who may grab is the chat's business, asked at grab time
(``messaging.selectors.payment_message_access``): in a group, every active member who can see
the message (the sender too, as in WeChat); in a direct chat, the peer. A member who left, a
newcomer who joined after it, or a stranger gets 404.

Split when sent (as WeChat does): sending draws every share (``next_share``) and stores them as
``RedPacketShare`` rows; a grab claims one with ``FOR UPDATE SKIP LOCKED``, so grabbers do not
queue on the packet to draw. What every grab of a packet still writes (the packet's counts, the
sender's red-packet escrow account, the sender's event stream head) it writes last, one
statement each just before COMMIT: that short "hot section" is what grabs of one packet wait for.

Lock order: unclaimed shares (grabs: the one claimed; the refund: all that are left), then the
packet row (or the payer's settings when sending), then ledger accounts (ascending ids), then
the conversation row (sending, and the grab or refund that ends the packet), then event stream
heads. Escrow accounts are per sender, so grabs of different senders' packets never share a hot
row.
"""

from __future__ import annotations

import logging
import random
import secrets

from django.conf import settings
from django.db import IntegrityError, connection
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from messaging import selectors as chat_selectors
from messaging import services as chat_services
from superapp.core import events as core_events
from superapp.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from superapp.core.prepared import PreparedStatement

from . import events
from .ledger import (
    Leg,
    account_for,
    ledger_balances_apply,
    ledger_entry_book,
    ledger_post,
    money_atomic,
    wallet_for,
)
from .models import AccountKind, JournalEntry, LedgerAccount, RedPacket, RedPacketGrab, RedPacketShare
from .services import _check_amount, _check_limits, _lock_settings, pin_verify

logger = logging.getLogger(__name__)
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


def split(*, kind: str, total_amount: int, count: int, rng: random.Random = _rng) -> list[int]:
    """Every share of a packet, drawn when it is sent, in the order grabs take them."""
    shares: list[int] = []
    remaining = total_amount
    for left in range(count, 0, -1):
        shares.append(next_share(kind=kind, remaining_amount=remaining, remaining_count=left, rng=rng))
        remaining -= shares[-1]
    return shares


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
    RedPacketShare.objects.bulk_create(
        [
            RedPacketShare(packet=packet, amount=a)
            for a in split(kind=kind, total_amount=total_amount, count=count)
        ]
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
    Everything is looked up before the money transaction takes a lock: the membership (a member
    leaving at that very moment grabs as if just before leaving), "already grabbed" (the unique
    (packet, user) constraint decides a race), the expiry (a grab that started before it may
    finish after it: the refund waits for it), the two accounts.
    """
    found = _lookup(user_id=user_id, packet_id=packet_id)
    if found is None:
        raise NotFound()
    packet, grabbed, escrow_id, wallet_id = found
    access = chat_selectors.payment_message_access(
        user_id=user_id, sender_id=packet.sender_id, kind="red_packet", object_id=packet.pk
    )
    if access is None:
        raise NotFound()
    if not access.is_group and user_id == packet.sender_id:
        raise Forbidden(_("Your red packet is for the other person."), code="own_red_packet")
    if packet.remaining_count == 0:  # cheap early answer for the crowd that arrives late
        raise _empty()
    if grabbed:
        raise _already_grabbed()
    if packet.status == RedPacket.Status.REFUNDED or packet.expires_at <= timezone.now():
        raise _expired()
    escrow = _account(escrow_id, AccountKind.RED_PACKET_ESCROW, packet.sender_id, packet.currency)
    wallet = _account(wallet_id, AccountKind.WALLET, user_id, packet.currency)
    return _grab(packet=packet, user_id=user_id, escrow=escrow, wallet=wallet)


# Every lookup of a grab but the chat's membership, in one statement: the packet, whether this
# user grabbed it already, the sender's escrow account and the grabber's wallet (their ids). A
# grab is mostly lookups, and building these as ORM queries cost more CPU than the whole money
# transaction (BENCHMARKS.md "Red-packet grabs").
_PACKET_FIELDS = list(RedPacket._meta.concrete_fields)
_LOOKUP_SQL = """
SELECT {columns},
       EXISTS (SELECT 1 FROM payments_redpacketgrab g WHERE g.packet_id = p.id AND g.user_id = %s),
       (SELECT a.id FROM payments_ledgeraccount a
         WHERE a.kind = %s AND a.owner_id = p.sender_id AND a.currency = p.currency),
       (SELECT a.id FROM payments_ledgeraccount a
         WHERE a.kind = %s AND a.owner_id = %s AND a.currency = p.currency)
  FROM payments_redpacket p WHERE p.id = %s
""".format(columns=", ".join(f"p.{f.column}" for f in _PACKET_FIELDS))  # noqa: S608 (the model's columns)
_LOOKUP = PreparedStatement("red_packet_lookup", _LOOKUP_SQL)


def _lookup(*, user_id: int, packet_id: int) -> tuple[RedPacket, bool, int | None, int | None] | None:
    """``(packet, already grabbed by user_id, escrow account id, wallet id)``, or ``None``."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _LOOKUP.execute(
                cursor,
                [user_id, AccountKind.RED_PACKET_ESCROW.value, AccountKind.WALLET.value, user_id, packet_id],
            )
            row = cursor.fetchone()
        if row is None:
            return None
        n = len(_PACKET_FIELDS)
        packet = RedPacket.from_db(connection.alias, [f.attname for f in _PACKET_FIELDS], row[:n])
        return packet, row[n], row[n + 1], row[n + 2]
    # Other databases (SQLite, the embedded demo): the ORM, which also converts its values.
    packet = (
        RedPacket.objects.filter(pk=packet_id)
        .annotate(grabbed=Exists(RedPacketGrab.objects.filter(packet_id=OuterRef("pk"), user_id=user_id)))
        .first()
    )
    if packet is None:
        return None
    escrow, wallet = (
        LedgerAccount.objects.filter(kind=kind, owner_id=owner, currency=packet.currency)
        .values_list("id", flat=True)
        .first()
        for kind, owner in ((AccountKind.RED_PACKET_ESCROW, packet.sender_id), (AccountKind.WALLET, user_id))
    )
    return packet, packet.grabbed, escrow, wallet


def _account(account_id: int | None, kind: str, owner_id: int, currency: str) -> LedgerAccount:
    """The account to post to: what a leg needs (id, currency), made on first use (a new wallet)."""
    if account_id is None:
        return account_for(kind=kind, owner_id=owner_id, currency=currency)
    account = LedgerAccount(id=account_id, kind=kind, owner_id=owner_id, currency=currency)
    account._state.adding, account._state.db = False, connection.alias
    return account


def _empty() -> Conflict:
    return Conflict(_("All the shares were taken."), code="red_packet_empty")


def _already_grabbed() -> Conflict:
    return Conflict(_("You already grabbed this red packet."), code="already_grabbed")


def _expired() -> Conflict:
    return Conflict(_("This red packet has expired."), code="red_packet_expired")


@money_atomic
def _grab(*, packet: RedPacket, user_id: int, escrow: LedgerAccount, wallet: LedgerAccount) -> RedPacketGrab:
    """Claim a share, book it, and only then touch the rows every grab of this packet writes.

    Lock order: the claimed share (no other grab waits for it: ``SKIP LOCKED``), the grabber's new
    grab row, then the hot rows, as late as possible and for one statement each before COMMIT:
    the packet (its counts, with ``F()``-style arithmetic in SQL), the ledger accounts (the
    sender's escrow and the grabber's wallet, ascending ids, one statement), event stream heads.
    """
    grab = _claim_share(packet=packet, user_id=user_id)
    if grab is None:
        # Every share is taken, or the expiry refund took the rest after our early check.
        status = RedPacket.objects.filter(pk=packet.pk).values_list("status", flat=True).first()
        raise _expired() if status == RedPacket.Status.REFUNDED else _empty()
    booked = ledger_entry_book(
        kind=JournalEntry.Kind.RED_PACKET_GRAB,
        reference=f"red_packet:{packet.id}:grab:{user_id}",
        legs=[Leg(escrow, -grab.amount), Leg(wallet, grab.amount)],
    )
    # The hot section: from here to COMMIT, every other grab of this packet that is as far waits.
    _count_grab(packet=packet, share=grab.amount)
    ledger_balances_apply(booked=[booked])
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


# Take the packet's lowest unclaimed share that no other grab holds and record it as this user's
# grab, in one statement: a grabber never waits for another here. The unique (packet, user)
# constraint refuses a second grab (the statement fails, the share stays).
_CLAIM_SQL = """
WITH share AS (
    DELETE FROM payments_redpacketshare
     WHERE id = (SELECT id FROM payments_redpacketshare WHERE packet_id = %s
                  ORDER BY id LIMIT 1 FOR UPDATE {wait})
    RETURNING amount
)
INSERT INTO payments_redpacketgrab (packet_id, user_id, amount, created_at)
SELECT %s, %s, amount, %s FROM share
RETURNING id, amount, created_at
"""
_CLAIMS = {
    wait: PreparedStatement("red_packet_claim", _CLAIM_SQL.format(wait=wait)) for wait in ("SKIP LOCKED", "")
}


def _claim_share(*, packet: RedPacket, user_id: int) -> RedPacketGrab | None:
    """The user's grab of one unclaimed share, or ``None`` when none is left.

    First without waiting (``SKIP LOCKED``); when every share left is held by grabs in flight,
    again waiting for them, since one of them may still roll back (a duplicate, a failure) and
    free its share: "empty" is only said when nothing is left. Nothing else is locked yet, so that
    wait cannot close a cycle. Raises ``already_grabbed`` on the unique constraint.
    """
    now = timezone.now()
    try:
        if connection.vendor == "postgresql":
            for wait in ("SKIP LOCKED", ""):
                with connection.cursor() as cursor:
                    _CLAIMS[wait].execute(cursor, [packet.pk, packet.pk, user_id, now])
                    row = cursor.fetchone()
                if row is not None:
                    grab = RedPacketGrab(
                        id=row[0], packet=packet, user_id=user_id, amount=row[1], created_at=row[2]
                    )
                    grab._state.adding, grab._state.db = False, connection.alias
                    return grab
            return None
        # Other databases (SQLite, the embedded demo: one writer at a time): the same, in steps.
        share = RedPacketShare.objects.filter(packet_id=packet.pk).order_by("id").first()
        if share is None:
            return None
        RedPacketShare.objects.filter(pk=share.pk).delete()
        return RedPacketGrab.objects.create(
            packet=packet, user_id=user_id, amount=share.amount, created_at=now
        )
    except IntegrityError as exc:
        if _is_second_grab(exc):
            raise _already_grabbed() from exc
        raise


def _is_second_grab(exc: IntegrityError) -> bool:
    """The unique (packet, user) constraint refused the grab row (PostgreSQL names it; SQLite
    names the columns)."""
    diag = getattr(exc.__cause__, "diag", None)
    if getattr(diag, "constraint_name", None) == "red_packet_grab_once":
        return True
    return "payments_redpacketgrab.packet_id, payments_redpacketgrab.user_id" in str(exc)


# The packet's counts move by this grab; the last share finishes it. The WHERE clause is a guard:
# the packet is active (a refunded or finished one pays nothing more: its escrow money is gone or
# belongs to the sender's other packets), every share still to come keeps at least 1 (0.01), and
# the last share takes exactly the remainder, so a finished packet never leaves money in escrow
# (finished packets are never refunded). The shares and the counts always agree unless code from
# before migration 0006 ran meanwhile; a disagreement refuses the grab instead of moving money.
_COUNT_SQL = """
UPDATE payments_redpacket
   SET remaining_count = remaining_count - 1,
       remaining_amount = remaining_amount - %(share)s,
       status = CASE WHEN remaining_count = 1 THEN %(finished)s ELSE status END,
       resolved_at = CASE WHEN remaining_count = 1 THEN %(now)s ELSE resolved_at END
 WHERE id = %(id)s AND status = %(active)s AND remaining_count > 0
   AND remaining_amount - %(share)s >= remaining_count - 1
   AND (remaining_count > 1 OR remaining_amount = %(share)s)
RETURNING remaining_count, remaining_amount, status, resolved_at
"""
_COUNT = PreparedStatement("red_packet_count", _COUNT_SQL)


def _count_grab(*, packet: RedPacket, share: int) -> None:
    """Take ``share`` off the packet's remainder (locks the packet's row until commit) and set
    ``packet``'s counts and status to what they are now.

    Raises ``red_packet_expired`` (refunded meanwhile) or ``red_packet_empty`` (the counts do not
    allow this share, logged as an error) when the guard refuses: the caller's transaction rolls
    back and its claimed share goes back.
    """
    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _COUNT.execute(
                cursor,
                {
                    "share": share,
                    "finished": RedPacket.Status.FINISHED.value,
                    "now": now,
                    "id": packet.pk,
                    "active": RedPacket.Status.ACTIVE.value,
                },
            )
            row = cursor.fetchone()
    else:  # the same UPDATE through the ORM, then a read (no UPDATE ... RETURNING in Django)
        last = Q(remaining_count=1)
        moved = (
            RedPacket.objects.filter(
                pk=packet.pk,
                status=RedPacket.Status.ACTIVE,
                remaining_count__gt=0,
                remaining_amount__gte=F("remaining_count") - 1 + share,
            )
            .filter(Q(remaining_count__gt=1) | Q(remaining_amount=share))
            .update(
                remaining_count=F("remaining_count") - 1,
                remaining_amount=F("remaining_amount") - share,
                status=Case(When(last, then=Value(RedPacket.Status.FINISHED.value)), default=F("status")),
                resolved_at=Case(When(last, then=Value(now)), default=F("resolved_at")),
            )
        )
        row = (
            RedPacket.objects.filter(pk=packet.pk)
            .values_list("remaining_count", "remaining_amount", "status", "resolved_at")
            .first()
            if moved
            else None
        )
    if row is None:
        status = RedPacket.objects.filter(pk=packet.pk).values_list("status", flat=True).first()
        logger.error(
            "payments.red_packet_shares_disagree",
            extra={"packet_id": packet.pk, "share": share, "status": status},
        )
        raise _expired() if status == RedPacket.Status.REFUNDED else _empty()
    packet.remaining_count, packet.remaining_amount, packet.status, packet.resolved_at = row


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
    """Return an expired packet's unclaimed remainder to its sender (safe to run twice).

    The unclaimed shares are taken first, waiting for any grab that holds one (that grab ends
    before this: its share is not refunded), then the packet's row: the grabs' lock order.
    """
    if not RedPacket.objects.filter(
        pk=packet_id, status=RedPacket.Status.ACTIVE, expires_at__lte=timezone.now()
    ).exists():
        return False
    unclaimed = RedPacketShare.objects.select_for_update().filter(packet_id=packet_id)
    amounts = list(unclaimed.values_list("amount", flat=True))
    unclaimed.delete()
    packet = RedPacket.objects.select_for_update().get(pk=packet_id)
    if packet.status != RedPacket.Status.ACTIVE:  # the last grab ended it meanwhile, or a twin refund
        return False
    refund = packet.remaining_amount
    if (sum(amounts), len(amounts)) != (packet.remaining_amount, packet.remaining_count):
        # The packet's counts are what its escrow holds for it: they are refunded, never the shares.
        logger.error(
            "payments.red_packet_shares_disagree",
            extra={"packet_id": packet.pk, "shares": len(amounts), "shares_sum": sum(amounts)},
        )
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
