"""Settlement (T+1): each merchant's business day, once it has ended, becomes withdrawable.

A business day is a date in ``PAYMENTS_SETTLEMENT_TIMEZONE`` (Asia/Shanghai by default, WeChat
Pay's), from midnight to midnight. A payment belongs to the day it was paid (``settlement_date``,
fixed when it is paid). The batch of day D (run at any time on D+1 or later) moves, in one
journal entry, from the merchant's ``merchant`` (unsettled) account to ``merchant_available``:

    net = gross (D's payments) - fees (charged on them)
          - refunds of D's orders made before D was settled + the fees those gave back

Refunds made after D is settled are paid from the available balance instead, so the batch never
has to chase them. ``net`` is never negative (a refund never exceeds its payment, and the fee it
gives back never exceeds the refund); when it is 0 nothing moves and the batch has no entry.

Exactly once: one ``SettlementBatch`` per (merchant, currency, day) under a unique constraint,
decided under the merchant's row lock (``FOR UPDATE``), which payments and refunds hold
``FOR KEY SHARE`` while they run: a payment still in flight at midnight is waited for, never
missed, and a payment that starts after the batch already falls on a later day.

The Celery beat task ``payments.settle_merchants`` runs every hour and settles every ended day
not settled yet (a missed run is caught up by the next one).
"""

from __future__ import annotations

from datetime import date, datetime

from django.db.models import Count, Exists, OuterRef, Sum
from django.utils import timezone

from superapp.core import events as core_events

from . import events
from .ledger import Leg, ledger_post, money_atomic
from .merchants import merchant_account
from .models import AccountKind, JournalEntry, Merchant, MerchantOrder, MerchantRefund, SettlementBatch
from .orders import PAID_STATES, business_day


def _lock_merchant_exclusive(merchant_id: int) -> Merchant:
    return Merchant.objects.select_for_update().get(pk=merchant_id)


@money_atomic
def settlement_settle(*, merchant_id: int, currency: str, day: date) -> tuple[SettlementBatch | None, bool]:
    """Settle one merchant's ended business day.

    Returns:
        (batch, created): the new batch, or the existing one (``created`` False) if the day was
        already settled; ``(None, False)`` when the day has not ended yet.
    """
    merchant = _lock_merchant_exclusive(merchant_id)
    existing = SettlementBatch.objects.filter(merchant_id=merchant_id, currency=currency, date=day).first()
    if existing is not None:
        return existing, False
    if day >= business_day(timezone.now()):
        return None, False
    paid = MerchantOrder.objects.filter(
        merchant_id=merchant_id, currency=currency, settlement_date=day, status__in=PAID_STATES
    ).aggregate(n=Count("id"), gross=Sum("amount"), fees=Sum("fee"))
    refunded = MerchantRefund.objects.filter(
        merchant_id=merchant_id,
        order__currency=currency,
        order__settlement_date=day,
        source=MerchantRefund.Source.PENDING,
    ).aggregate(n=Count("id"), amount=Sum("amount"), fees=Sum("fee_refund"))
    gross, fees = paid["gross"] or 0, paid["fees"] or 0
    refunds, fee_refunds = refunded["amount"] or 0, refunded["fees"] or 0
    net = gross - fees - refunds + fee_refunds
    entry = None
    if net:
        entry = ledger_post(
            kind=JournalEntry.Kind.MERCHANT_SETTLEMENT,
            reference=f"settlement:{merchant_id}:{currency}:{day.isoformat()}",
            legs=[
                Leg(
                    merchant_account(merchant_id=merchant_id, kind=AccountKind.MERCHANT, currency=currency),
                    -net,
                ),
                Leg(
                    merchant_account(
                        merchant_id=merchant_id, kind=AccountKind.MERCHANT_AVAILABLE, currency=currency
                    ),
                    net,
                ),
            ],
            memo=f"settlement {day.isoformat()}",
        )
    batch = SettlementBatch.objects.create(
        merchant_id=merchant_id,
        currency=currency,
        date=day,
        order_count=paid["n"],
        refund_count=refunded["n"],
        gross=gross,
        fees=fees,
        refunds=refunds,
        fee_refunds=fee_refunds,
        net=net,
        entry=entry,
    )
    core_events.publish(
        user_ids=[merchant.owner_id], type=events.MERCHANT_SETTLED, data=events.settlement_payload(batch)
    )
    return batch, True


def settlements_due(*, now: datetime | None = None, limit: int = 5000) -> list[tuple[int, str, date]]:
    """(merchant, currency, day) of paid orders on ended days without a batch yet."""
    today = business_day(now or timezone.now())
    settled = SettlementBatch.objects.filter(
        merchant_id=OuterRef("merchant_id"), currency=OuterRef("currency"), date=OuterRef("settlement_date")
    )
    rows = (
        MerchantOrder.objects.filter(settlement_date__lt=today, status__in=PAID_STATES)
        .exclude(Exists(settled))
        .values_list("merchant_id", "currency", "settlement_date")
        .distinct()
        .order_by("settlement_date", "merchant_id")
    )
    return list(rows[:limit])


def settlements_run(*, now: datetime | None = None) -> int:
    """Settle every ended, unsettled business day of every merchant, each in its own
    transaction (safe to run twice, and concurrently: the second finds the batch). Returns how
    many batches this run created."""
    created = 0
    for merchant_id, currency, day in settlements_due(now=now):
        _batch, new = settlement_settle(merchant_id=merchant_id, currency=currency, day=day)
        created += new
    return created
