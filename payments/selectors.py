"""Reads of the payments app (its public read interface)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.db.models import Q, QuerySet, Sum

from messaging import selectors as chat_selectors
from superapp.core.errors import NotFound

from .models import (
    AccountKind,
    Card,
    IdentityVerification,
    LedgerAccount,
    Posting,
    RedPacket,
    RedPacketGrab,
    Transfer,
    WalletSettings,
    Withdrawal,
)


def wallet_balance(*, user_id: int, currency: str | None = None) -> int:
    """The wallet's balance in minor units (0 before its first movement)."""
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    balance = (
        LedgerAccount.objects.filter(kind=AccountKind.WALLET, owner_id=user_id, currency=currency)
        .values_list("balance", flat=True)
        .first()
    )
    return balance or 0


def wallet_settings(*, user_id: int) -> WalletSettings:
    """Settings as stored, or unsaved defaults (a read never writes)."""
    return WalletSettings.objects.filter(user_id=user_id).first() or WalletSettings(user_id=user_id)


def wallet_history(
    *,
    user_id: int,
    currency: str | None = None,
    kind: str | None = None,
    direction: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Posting]:
    """The postings on the user's wallet, newest first, with their entries (one query a page)."""
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    qs = Posting.objects.filter(
        account__kind=AccountKind.WALLET, account__owner_id=user_id, account__currency=currency
    ).select_related("entry")
    if kind:
        qs = qs.filter(entry__kind=kind)
    if direction == "in":
        qs = qs.filter(amount__gt=0)
    elif direction == "out":
        qs = qs.filter(amount__lt=0)
    if since:
        qs = qs.filter(entry__created_at__gte=since)
    if until:
        qs = qs.filter(entry__created_at__lt=until)
    return qs.order_by("-id")


def wallet_statement_rows(
    *, user_id: int, start: datetime, end: datetime, currency: str | None = None
) -> Iterator[list]:
    """CSV rows (header first) of one period's wallet movements, oldest first, with a running balance."""
    before = wallet_history(user_id=user_id, currency=currency, until=start).select_related(None).order_by()
    opening = before.aggregate(total=Sum("amount"))["total"] or 0
    yield ["date", "entry_id", "kind", "memo", "amount", "currency", "balance"]
    balance = opening
    period = wallet_history(user_id=user_id, currency=currency, since=start, until=end).order_by("id")
    for posting in period.iterator():
        balance += posting.amount
        yield [
            posting.entry.created_at.isoformat(),
            posting.entry_id,
            posting.entry.kind,
            posting.entry.memo,
            posting.amount,
            posting.currency,
            balance,
        ]


def transfers_for(*, user_id: int) -> QuerySet[Transfer]:
    return Transfer.objects.filter(Q(sender_id=user_id) | Q(receiver_id=user_id)).order_by("-id")


def transfer_get(*, user_id: int, transfer_id: int) -> Transfer:
    """A transfer the user sent or received (404 for anyone else)."""
    transfer = transfers_for(user_id=user_id).filter(pk=transfer_id).first()
    if transfer is None:
        raise NotFound()
    return transfer


def red_packet_get(*, user_id: int, packet_id: int) -> tuple[RedPacket, list[RedPacketGrab]]:
    """A red packet and its grabs, for its sender or a member of its chat who can see its
    message (404 for anyone else, also a member who left)."""
    packet = RedPacket.objects.filter(pk=packet_id).first()
    if packet is None or (
        user_id != packet.sender_id
        and chat_selectors.payment_message_access(
            user_id=user_id, sender_id=packet.sender_id, kind="red_packet", object_id=packet.pk
        )
        is None
    ):
        raise NotFound()
    return packet, list(packet.grabs.order_by("id"))


def cards_for(*, user_id: int) -> QuerySet[Card]:
    return Card.objects.filter(user_id=user_id).order_by("-id")


def withdrawals_for(*, user_id: int) -> QuerySet[Withdrawal]:
    return Withdrawal.objects.filter(user_id=user_id).order_by("-id")


def withdrawal_get(*, user_id: int, withdrawal_id: int) -> Withdrawal:
    withdrawal = withdrawals_for(user_id=user_id).filter(pk=withdrawal_id).first()
    if withdrawal is None:
        raise NotFound()
    return withdrawal


def verification_latest(*, user_id: int) -> IdentityVerification | None:
    """The user's latest real-name verification attempt (None: never started)."""
    return IdentityVerification.objects.filter(user_id=user_id).order_by("-id").first()
