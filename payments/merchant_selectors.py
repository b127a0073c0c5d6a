"""Reads of Payments II: merchants, their keys and balances, orders, refunds, settlements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from django.db.models import Q, QuerySet
from django.utils import timezone

from superapp.core.errors import NotFound

from .models import (
    AccountKind,
    LedgerAccount,
    Merchant,
    MerchantKey,
    MerchantOrder,
    MerchantRefund,
    SettlementBatch,
)


def merchants_for(*, user_id: int) -> QuerySet[Merchant]:
    return Merchant.objects.filter(owner_id=user_id).order_by("-id")


def merchant_get(*, user_id: int, merchant_id: int) -> Merchant:
    """One merchant of its owner (404 for anyone else)."""
    merchant = merchants_for(user_id=user_id).filter(pk=merchant_id).first()
    if merchant is None:
        raise NotFound()
    return merchant


@dataclass(frozen=True)
class MerchantBalances:
    pending: int  # paid, not settled yet
    available: int  # settled: withdrawable


def merchant_balances(*, merchant: Merchant) -> MerchantBalances:
    rows = dict(
        LedgerAccount.objects.filter(merchant_id=merchant.id, currency=merchant.currency).values_list(
            "kind", "balance"
        )
    )
    return MerchantBalances(
        pending=rows.get(AccountKind.MERCHANT, 0), available=rows.get(AccountKind.MERCHANT_AVAILABLE, 0)
    )


def merchant_live_keys(*, merchant_id: int) -> list[MerchantKey]:
    """Keys that still work (the newest first); secrets are never part of a read."""
    now = timezone.now()
    return list(
        MerchantKey.objects.filter(merchant_id=merchant_id)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .defer("secret_encrypted")
        .order_by("-id")
    )


def merchant_key_for_auth(*, key_id: str) -> MerchantKey | None:
    """The live key with that id, its merchant and the merchant's owner (one query), or ``None``."""
    key = MerchantKey.objects.select_related("merchant__owner").filter(key_id=key_id).first()
    if key is None or (key.expires_at is not None and key.expires_at <= timezone.now()):
        return None
    return key


def merchant_for_static_code(*, static_code: str) -> Merchant:
    merchant = Merchant.objects.filter(static_code=static_code).first() if static_code else None
    if merchant is None:
        raise NotFound()
    return merchant


def order_for_payer(*, code: str) -> MerchantOrder:
    """An order by the code its QR carries (anyone with the code may see it, as with WeChat's)."""
    order = MerchantOrder.objects.select_related("merchant").filter(code=code).first() if code else None
    if order is None:
        raise NotFound()
    return order


def order_get(
    *, merchant_id: int, order_id: int | None = None, out_trade_no: str | None = None
) -> MerchantOrder:
    """One of the merchant's orders by our id or its out_trade_no (404 otherwise)."""
    qs = MerchantOrder.objects.select_related("merchant").filter(merchant_id=merchant_id)
    if order_id is not None:
        order = qs.filter(pk=order_id).first()
    else:
        order = qs.filter(out_trade_no=out_trade_no).first() if out_trade_no else None
    if order is None:
        raise NotFound()
    return order


def orders_for_merchant(*, merchant_id: int, status: str | None = None) -> QuerySet[MerchantOrder]:
    qs = MerchantOrder.objects.filter(merchant_id=merchant_id).select_related("merchant")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-id")


def refund_get(*, merchant_id: int, out_refund_no: str) -> MerchantRefund:
    refund = (
        MerchantRefund.objects.select_related("order", "order__merchant")
        .filter(merchant_id=merchant_id, out_refund_no=out_refund_no)
        .first()
    )
    if refund is None:
        raise NotFound()
    return refund


def settlements_for(
    *, merchant_id: int, since: date | None = None, until: date | None = None
) -> QuerySet[SettlementBatch]:
    qs = SettlementBatch.objects.filter(merchant_id=merchant_id)
    if since:
        qs = qs.filter(date__gte=since)
    if until:
        qs = qs.filter(date__lte=until)
    return qs.order_by("-date", "-id")


SETTLEMENT_CSV_HEADER = [
    "date",
    "currency",
    "orders",
    "refunds",
    "gross",
    "fees",
    "refunded",
    "fees_refunded",
    "net",
    "entry_id",
    "settled_at",
]


def settlement_report_rows(
    *, merchant_id: int, since: date | None = None, until: date | None = None
) -> Iterator[list]:
    """CSV rows (header first) of a merchant's settlement batches, oldest first, with a total."""
    yield SETTLEMENT_CSV_HEADER
    totals = {"orders": 0, "refunds": 0, "gross": 0, "fees": 0, "refunded": 0, "fees_refunded": 0, "net": 0}
    currency = ""
    for batch in (
        settlements_for(merchant_id=merchant_id, since=since, until=until).order_by("date", "id").iterator()
    ):
        currency = batch.currency
        values = [
            batch.order_count,
            batch.refund_count,
            batch.gross,
            batch.fees,
            batch.refunds,
            batch.fee_refunds,
            batch.net,
        ]
        for key, value in zip(totals, values, strict=True):
            totals[key] += value
        yield [
            batch.date.isoformat(),
            batch.currency,
            *values,
            batch.entry_id or "",
            batch.created_at.isoformat(),
        ]
    yield ["total", currency, *totals.values(), "", ""]
