"""Merchant orders (Payments II): create, pay (dynamic QR, static QR, payment code), close, refund.

WeChat Pay's flows, on our ledger:

* **Native / dynamic QR**: the merchant's server creates an order (``order_create``, idempotent on
  its ``out_trade_no``) and shows ``code_url`` as a QR code; the payer's app fetches the order by
  its code and pays it with the PIN (``order_pay``) before ``expire_at``.
* **Static QR**: the payer scans the merchant's fixed code, types the amount and pays with the PIN
  (``merchant_static_pay``): an order is created and paid in one transaction.
* **Micropay / payment code**: the merchant scans the payer's one-time code and charges it
  (``order_micropay``): at once up to ``PAYMENTS_MICROPAY_NO_PIN_LIMIT``, above it the order waits
  in ``user_paying`` until the payer confirms with the PIN (``order_pay``); the merchant queries.
* **Refunds** (``refund_create``, idempotent on ``out_refund_no``): full or partial, several
  allowed, never more than was paid; the fee comes back in proportion.

A payment posts one entry: payer's wallet ``-amount``, the merchant's unsettled account
``+(amount - fee)``, the platform's ``fees`` account ``+fee``. A refund posts the reverse of its
share, from the unsettled account while the order's day is not settled, else from the merchant's
available balance (409 ``merchant_balance_insufficient`` when that is short).

Lock order inside one money transaction (extends docs/payments.md's):

1. business rows: the payment code, the order (``select_for_update``), the payer's
   ``WalletSettings`` (PIN counter, daily limit);
2. the merchant row, ``FOR KEY SHARE`` (settlement takes it ``FOR UPDATE``);
3. writes that take no shared lock: the order's new state, the notification row
   (``webhook_enqueue``, unique per event);
4. ledger accounts in ascending id order (``ledger_post``): the merchant's and the platform's fee
   accounts are hot rows, held until commit, so only the events follow;
5. event stream heads (``publish``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core import events as core_events
from superapp.core.audit import audit_record
from superapp.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from superapp.core.webhooks import webhook_enqueue

from . import events
from .ledger import InsufficientFunds, Leg, account_for, ledger_post, money_atomic, wallet_for
from .merchant_selectors import merchant_for_static_code, order_for_payer, order_get
from .merchants import (
    MerchantBalanceInsufficient,
    check_active,
    check_notify_url,
    fee_for,
    fee_refund_for,
    merchant_account,
    merchant_lock_shared,
)
from .models import (
    AccountKind,
    JournalEntry,
    Merchant,
    MerchantOrder,
    MerchantRefund,
    SettlementBatch,
    WalletSettings,
)
from .payment_codes import payment_code_lock
from .services import PinLocked, _check_limits, _lock_settings, pin_verify

logger = logging.getLogger(__name__)

OUT_NO_RE = re.compile(r"[A-Za-z0-9_\-|*@.]{6,64}")
Status = MerchantOrder.Status
PAID_STATES = (Status.PAID, Status.REFUNDED)

NOTIFY_ORDER_PAID = "order.paid"
NOTIFY_REFUND_SUCCEEDED = "refund.succeeded"


def business_day(moment: datetime) -> date:
    """The settlement day of a moment: its date in ``PAYMENTS_SETTLEMENT_TIMEZONE``."""
    return timezone.localtime(moment, timezone=_settlement_tz()).date()


def _settlement_tz() -> ZoneInfo:
    return ZoneInfo(settings.PAYMENTS_SETTLEMENT_TIMEZONE)


# --- validation -------------------------------------------------------------------------------


def _fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_out_no(value: object, field: str) -> str:
    if not isinstance(value, str) or not OUT_NO_RE.fullmatch(value):
        raise ValidationFailed(
            fields={field: [_("6 to 64 characters: letters, digits and _-|*@.")]}, code="invalid_" + field
        )
    return value


def _check_order_amount(amount: object, merchant: Merchant, currency: str | None) -> str:
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed(fields={"amount": [_("A positive whole number of minor units (fen).")]})
    ceiling = max(level["per_payment"] for level in settings.PAYMENTS_LIMITS.values())
    if amount > ceiling:
        raise ValidationFailed(
            fields={"amount": [_("At most %(max)d.") % {"max": ceiling}]}, code="amount_too_large"
        )
    currency = currency or merchant.currency
    if currency != merchant.currency:
        raise ValidationFailed(
            fields={"currency": [_("This merchant takes %(currency)s.") % {"currency": merchant.currency}]},
            code="unsupported_currency",
        )
    return currency


def _check_text(value: object, field: str, max_length: int, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > max_length or (required and not value.strip()):
        raise ValidationFailed(fields={field: [_("At most %(n)d characters.") % {"n": max_length}]})
    return value


def _merchant(merchant_id: int) -> Merchant:
    merchant = Merchant.objects.filter(pk=merchant_id).first()
    if merchant is None:
        raise NotFound()
    return merchant


def _existing_or_conflict(order: MerchantOrder, request_hash: str) -> MerchantOrder:
    if order.request_hash != request_hash:
        raise Conflict(
            _("This out_trade_no was already used with other parameters."), code="out_trade_no_conflict"
        )
    return order


# --- create (dynamic QR) ------------------------------------------------------------------------


def order_create(
    *,
    merchant_id: int,
    out_trade_no: str,
    amount: int,
    description: str,
    currency: str | None = None,
    attach: str = "",
    notify_url: str = "",
    expire_seconds: int | None = None,
) -> tuple[MerchantOrder, bool]:
    """Create an order for the payer to pay by scanning its ``code_url`` (WeChat "Native").

    Idempotent on ``out_trade_no``: the same parameters again return the existing order
    (``created`` False), other parameters are 409 ``out_trade_no_conflict``.
    """
    merchant = _merchant(merchant_id)
    out_trade_no = _check_out_no(out_trade_no, "out_trade_no")
    currency = _check_order_amount(amount, merchant, currency)
    description = _check_text(description, "description", 127, required=True)
    attach = _check_text(attach, "attach", 127, required=False)
    max_ttl = int(settings.PAYMENTS_ORDER_MAX_TTL.total_seconds())
    if expire_seconds is not None and (
        type(expire_seconds) is not int or not 60 <= expire_seconds <= max_ttl
    ):
        raise ValidationFailed(fields={"expire_seconds": [_("Between 60 and %(max)d.") % {"max": max_ttl}]})
    request_hash = _fingerprint(
        {
            "type": MerchantOrder.TradeType.NATIVE,
            "amount": amount,
            "currency": currency,
            "description": description,
            "attach": attach,
            "notify_url": notify_url or "",
            "expire_seconds": expire_seconds,
        }
    )
    existing = MerchantOrder.objects.filter(merchant_id=merchant.id, out_trade_no=out_trade_no).first()
    if existing is not None:
        return _existing_or_conflict(existing, request_hash), False
    check_active(merchant)
    notify_url = check_notify_url(notify_url)
    ttl = timedelta(seconds=expire_seconds) if expire_seconds else settings.PAYMENTS_ORDER_TTL
    try:
        with transaction.atomic():
            order = MerchantOrder.objects.create(
                merchant=merchant,
                out_trade_no=out_trade_no,
                trade_type=MerchantOrder.TradeType.NATIVE,
                description=description,
                attach=attach,
                amount=amount,
                currency=currency,
                code=secrets.token_urlsafe(24),
                notify_url=notify_url,
                request_hash=request_hash,
                fee_rate_bps=merchant.fee_rate_bps,
                expire_at=timezone.now() + ttl,
            )
    except IntegrityError:  # the same out_trade_no created concurrently
        existing = MerchantOrder.objects.filter(merchant_id=merchant.id, out_trade_no=out_trade_no).first()
        if existing is None:
            raise
        return _existing_or_conflict(existing, request_hash), False
    return order, True


# --- paying -----------------------------------------------------------------------------------


def _check_payable(order: MerchantOrder, *, payer_id: int, now: datetime) -> None:
    if order.status in PAID_STATES:
        raise Conflict(_("This order is already paid."), code="order_paid")
    if order.status == Status.CLOSED:
        raise Conflict(_("This order is closed."), code="order_closed")
    if order.status == Status.USER_PAYING and order.payer_id != payer_id:
        raise Forbidden(_("This order waits for another payer."), code="not_your_order")
    if order.expire_at <= now:
        raise Conflict(_("This order has expired."), code="order_expired")
    check_active(order.merchant)


def _charge(order: MerchantOrder, *, payer: WalletSettings) -> None:
    """Pay ``order`` from the payer's wallet. Caller holds the order's row lock (or created it in
    this transaction) and the payer's settings row lock, inside a money transaction.

    Raises:
        InsufficientFunds, limit errors (``limit_per_payment``, ``limit_per_day``).
    """
    _check_limits(payer=payer, amount=order.amount, currency=order.currency)
    merchant_lock_shared(merchant_id=order.merchant_id)
    now = timezone.now()  # after the merchant lock: settlement cannot have closed this day since
    fee = fee_for(amount=order.amount, rate_bps=order.fee_rate_bps)
    legs = [Leg(wallet_for(user_id=payer.user_id, currency=order.currency), -order.amount)]
    if order.amount - fee:
        pending = merchant_account(
            merchant_id=order.merchant_id, kind=AccountKind.MERCHANT, currency=order.currency
        )
        legs.append(Leg(pending, order.amount - fee))
    if fee:
        legs.append(Leg(account_for(kind=AccountKind.FEES, currency=order.currency), fee))
    # The order row and the notification first: the merchant's and the platform's fee accounts
    # are hot rows, locked by ledger_post until commit, so as little as possible runs after it.
    order.status = Status.PAID
    order.payer_id = payer.user_id
    order.paid_at = now
    order.fee = fee
    order.settlement_date = _open_business_day(order, now)
    order.save(update_fields=["status", "payer", "paid_at", "fee", "settlement_date"])
    _notify(order, NOTIFY_ORDER_PAID, events.merchant_order_payload(order), f"payments.order:{order.id}:paid")
    ledger_post(
        kind=JournalEntry.Kind.MERCHANT_PAYMENT,
        reference=f"order:{order.id}:pay",
        legs=legs,
        memo=order.description[:200],
    )
    core_events.publish_many(
        specs=[
            core_events.EventSpec(
                user_ids=[payer.user_id], type=events.ORDER_PAID, data=events.checkout_order_payload(order)
            ),
            core_events.EventSpec(
                user_ids=[order.merchant.owner_id],
                type=events.MERCHANT_PAYMENT_RECEIVED,
                data=events.payment_received_payload(order),
            ),
        ]
    )


def _open_business_day(order: MerchantOrder, now: datetime) -> date:
    """The business day a payment made ``now`` is booked to: ``now``'s, or, if a settlement batch
    already exists for that day, the first later day without one. The web host's clock decides
    ``now``, the worker's decides when a day has ended: with clocks a little apart around
    midnight, a day can be settled before a payment of that day commits, and its net would then
    never reach the available balance. Caller holds the merchant row ``FOR KEY SHARE`` (taken
    by :func:`merchant_lock_shared`), so no batch can appear before this payment commits."""
    day = business_day(now)
    settled = set(
        SettlementBatch.objects.filter(
            merchant_id=order.merchant_id, currency=order.currency, date__gte=day
        ).values_list("date", flat=True)
    )
    while day in settled:
        day += timedelta(days=1)
    return day


def _notify(order: MerchantOrder, event_type: str, payload: dict, dedup_key: str) -> None:
    """Queue the signed notification to the merchant (in the caller's transaction: sent after
    commit, retried for up to 24 h by ``superapp.core.webhooks``). A URL that has become
    unusable is logged, never a reason to fail a payment: the merchant can still query."""
    url = order.notify_url or order.merchant.notify_url
    if not url:
        return
    try:
        webhook_enqueue(
            url=url,
            event_type=event_type,
            payload=payload,
            secret=order.merchant.notify_secret,
            dedup_key=dedup_key,
            # No DNS lookup under the payment's locks: the URL was checked (resolved) when the
            # merchant or the order set it, and every delivery attempt checks it again.
            resolve=False,
        )
    except ValidationFailed as exc:
        logger.error(
            "payments.notify_url_refused",
            extra={"order_id": order.id, "merchant_id": order.merchant_id, "code": exc.code},
        )


def order_pay(*, payer_id: int, code: str, pin: str, amount: int | None = None) -> MerchantOrder:
    """The payer pays an order with the PIN: a dynamic QR's order, or a payment-code order
    waiting in ``user_paying`` for this payer's confirmation.

    ``amount``, when given, must be the amount the app showed (409 ``amount_mismatch``).
    """
    order = order_for_payer(code=code)
    _check_payable(order, payer_id=payer_id, now=timezone.now())
    if amount is not None and amount != order.amount:
        raise Conflict(_("The amount does not match the order."), code="amount_mismatch")
    pin_verify(user_id=payer_id, pin=pin)
    return _order_pay(order_id=order.id, payer_id=payer_id)


@money_atomic
def _order_pay(*, order_id: int, payer_id: int) -> MerchantOrder:
    order = MerchantOrder.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=order_id)
    _check_payable(order, payer_id=payer_id, now=timezone.now())
    _charge(order, payer=_lock_settings(payer_id))
    return order


def merchant_static_pay(
    *, payer_id: int, static_code: str, amount: int, pin: str, note: str = ""
) -> MerchantOrder:
    """Pay a merchant through its static QR code: the payer chose the amount."""
    merchant = merchant_for_static_code(static_code=static_code)
    check_active(merchant)
    currency = _check_order_amount(amount, merchant, None)
    note = _check_text(note, "note", 100, required=False)
    pin_verify(user_id=payer_id, pin=pin)
    return _static_pay(merchant=merchant, payer_id=payer_id, amount=amount, currency=currency, note=note)


@money_atomic
def _static_pay(*, merchant: Merchant, payer_id: int, amount: int, currency: str, note: str) -> MerchantOrder:
    # The payer's settings row before the order's INSERT (its foreign key takes the merchant row
    # FOR KEY SHARE): business rows first, then the merchant, as documented.
    payer = _lock_settings(payer_id)
    now = timezone.now()
    order = MerchantOrder.objects.create(
        merchant=merchant,
        out_trade_no=f"static_{secrets.token_hex(12)}",
        trade_type=MerchantOrder.TradeType.STATIC_QR,
        description=note or merchant.name[:127],
        amount=amount,
        currency=currency,
        code=secrets.token_urlsafe(24),
        request_hash="",
        fee_rate_bps=merchant.fee_rate_bps,
        expire_at=now + settings.PAYMENTS_ORDER_TTL,
    )
    _charge(order, payer=payer)
    return order


def order_micropay(
    *,
    merchant_id: int,
    out_trade_no: str,
    amount: int,
    auth_code: str,
    description: str,
    currency: str | None = None,
    attach: str = "",
    notify_url: str = "",
) -> tuple[MerchantOrder, bool]:
    """Charge the payer's payment code (WeChat "Micropay").

    Up to ``PAYMENTS_MICROPAY_NO_PIN_LIMIT`` it is paid at once; above, the order is
    ``user_paying`` until the payer confirms with the PIN (the merchant queries it). A failure
    (code unknown, used or expired, insufficient balance, limits) stores nothing and leaves the
    code as it was. Idempotent on ``out_trade_no`` like :func:`order_create`.
    """
    merchant = _merchant(merchant_id)
    out_trade_no = _check_out_no(out_trade_no, "out_trade_no")
    currency = _check_order_amount(amount, merchant, currency)
    description = _check_text(description, "description", 127, required=True)
    attach = _check_text(attach, "attach", 127, required=False)
    if not isinstance(auth_code, str):
        raise ValidationFailed(fields={"auth_code": [_("The payment code's 18 digits.")]})
    request_hash = _fingerprint(
        {
            "type": MerchantOrder.TradeType.MICROPAY,
            "amount": amount,
            "currency": currency,
            "description": description,
            "attach": attach,
            "notify_url": notify_url or "",
            "auth_code": hashlib.sha256(auth_code.encode()).hexdigest(),
        }
    )
    existing = MerchantOrder.objects.filter(merchant_id=merchant.id, out_trade_no=out_trade_no).first()
    if existing is not None:
        return _existing_or_conflict(existing, request_hash), False
    check_active(merchant)
    notify_url = check_notify_url(notify_url)
    try:
        order, created = _micropay(
            merchant=merchant,
            out_trade_no=out_trade_no,
            amount=amount,
            currency=currency,
            auth_code=auth_code,
            description=description,
            attach=attach,
            notify_url=notify_url,
            request_hash=request_hash,
        )
    except IntegrityError:
        existing = MerchantOrder.objects.filter(merchant_id=merchant.id, out_trade_no=out_trade_no).first()
        if existing is None:
            raise
        return _existing_or_conflict(existing, request_hash), False
    return order, created


@money_atomic
def _micropay(
    *,
    merchant: Merchant,
    out_trade_no: str,
    amount: int,
    currency: str,
    auth_code: str,
    description: str,
    attach: str,
    notify_url: str,
    request_hash: str,
) -> tuple[MerchantOrder, bool]:
    code = payment_code_lock(code=auth_code, merchant_id=merchant.id, out_trade_no=out_trade_no)
    if code.used_at is not None:  # the same request, sent again while the first was running
        replayed = MerchantOrder.objects.get(pk=code.order_id)
        return _existing_or_conflict(replayed, request_hash), False
    now = timezone.now()
    # The payer's settings row before the order's INSERT, whose foreign key takes the merchant
    # row FOR KEY SHARE: business rows first, then the merchant (the documented order).
    payer = _lock_settings(code.user_id)
    if payer.pin_locked_until and payer.pin_locked_until > now:
        raise PinLocked(_("The customer's payments are locked after too many wrong PINs."))
    no_pin = amount <= settings.PAYMENTS_MICROPAY_NO_PIN_LIMIT
    order = MerchantOrder.objects.create(
        merchant=merchant,
        out_trade_no=out_trade_no,
        trade_type=MerchantOrder.TradeType.MICROPAY,
        description=description,
        attach=attach,
        amount=amount,
        currency=currency,
        code=secrets.token_urlsafe(24),
        notify_url=notify_url,
        request_hash=request_hash,
        fee_rate_bps=merchant.fee_rate_bps,
        payer_id=code.user_id,
        status=Status.CREATED if no_pin else Status.USER_PAYING,
        expire_at=now + (settings.PAYMENTS_ORDER_TTL if no_pin else settings.PAYMENTS_MICROPAY_CONFIRM_TTL),
    )
    code.used_at = now
    code.order = order
    code.save(update_fields=["used_at", "order"])
    if no_pin:
        _charge(order, payer=payer)
    else:
        # Refuse now what the PIN could not fix (limits); the balance is checked when paying.
        _check_limits(payer=payer, amount=amount, currency=currency)
        core_events.publish(
            user_ids=[code.user_id],
            type=events.ORDER_CONFIRM_REQUIRED,
            data=events.checkout_order_payload(order),
        )
    return order, True


# --- close --------------------------------------------------------------------------------------


@transaction.atomic
def order_close(
    *, merchant_id: int, order_id: int | None = None, out_trade_no: str | None = None
) -> MerchantOrder:
    """Close an unpaid order (the payer can no longer pay it). Closing a closed order is a no-op;
    a paid one is 409 ``order_paid`` (refund it instead)."""
    found = order_get(merchant_id=merchant_id, order_id=order_id, out_trade_no=out_trade_no)
    order = MerchantOrder.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=found.pk)
    if order.status in PAID_STATES:
        raise Conflict(_("This order is paid: refund it instead."), code="order_paid")
    if order.status == Status.CLOSED:
        return order
    waiting_payer = order.payer_id if order.status == Status.USER_PAYING else None
    order.status = Status.CLOSED
    order.closed_at = timezone.now()
    order.save(update_fields=["status", "closed_at"])
    if waiting_payer:
        core_events.publish(
            user_ids=[waiting_payer], type=events.ORDER_CLOSED, data=events.checkout_order_payload(order)
        )
    return order


def orders_close_expired(*, batch: int = 1000) -> int:
    """Mark unpaid orders past ``expire_at`` closed (paying them is refused anyway); returns how
    many. One conditional UPDATE: a payment holding the row commits first or finds it closed."""
    now = timezone.now()
    ids = list(
        MerchantOrder.objects.filter(status__in=[Status.CREATED, Status.USER_PAYING], expire_at__lte=now)
        .order_by("expire_at")
        .values_list("id", flat=True)[:batch]
    )
    return MerchantOrder.objects.filter(
        pk__in=ids, status__in=[Status.CREATED, Status.USER_PAYING], expire_at__lte=now
    ).update(status=Status.CLOSED, closed_at=now)


# --- refunds ------------------------------------------------------------------------------------


def _existing_refund_or_conflict(refund: MerchantRefund, request_hash: str) -> MerchantRefund:
    if refund.request_hash != request_hash:
        raise Conflict(
            _("This out_refund_no was already used with other parameters."), code="out_refund_no_conflict"
        )
    return refund


def refund_create(
    *,
    merchant_id: int,
    out_refund_no: str,
    amount: int,
    order_id: int | None = None,
    out_trade_no: str | None = None,
    reason: str = "",
    initiated_by: str = MerchantRefund.Initiator.MERCHANT,
    actor_id: int | None = None,
    ip: str | None = None,
) -> tuple[MerchantRefund, bool]:
    """Refund part or all of a paid order to the payer's wallet.

    Idempotent on ``out_refund_no`` (same order and amount: the existing refund, ``created``
    False; otherwise 409 ``out_refund_no_conflict``). Several partial refunds may follow one
    another; their total never exceeds the amount paid (checked under the order's row lock, and
    by a CHECK constraint).

    A staff refund passes ``actor_id`` (and ``ip``): the audit entry is written in the refund's
    own transaction.

    Raises:
        Conflict ``order_not_paid``: the order is unpaid, waiting, or closed.
        ValidationFailed ``refund_exceeds_paid``: more than what is left to refund.
        MerchantBalanceInsufficient: the order's day is settled and the available balance is short.
    """
    out_refund_no = _check_out_no(out_refund_no, "out_refund_no")
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed(fields={"amount": [_("A positive whole number of minor units (fen).")]})
    reason = _check_text(reason, "reason", 80, required=False)
    order = order_get(merchant_id=merchant_id, order_id=order_id, out_trade_no=out_trade_no)
    request_hash = _fingerprint({"order_id": order.id, "amount": amount})
    existing = MerchantRefund.objects.filter(merchant_id=merchant_id, out_refund_no=out_refund_no).first()
    if existing is not None:
        return _existing_refund_or_conflict(existing, request_hash), False
    try:
        return _refund(
            order_id=order.id,
            out_refund_no=out_refund_no,
            amount=amount,
            reason=reason,
            initiated_by=initiated_by,
            request_hash=request_hash,
            actor_id=actor_id,
            ip=ip,
        )
    except IntegrityError:  # the same out_refund_no on another order, concurrently
        existing = MerchantRefund.objects.filter(merchant_id=merchant_id, out_refund_no=out_refund_no).first()
        if existing is None:
            raise
        return _existing_refund_or_conflict(existing, request_hash), False


@money_atomic
def _refund(
    *,
    order_id: int,
    out_refund_no: str,
    amount: int,
    reason: str,
    initiated_by: str,
    request_hash: str,
    actor_id: int | None,
    ip: str | None,
) -> tuple[MerchantRefund, bool]:
    order = MerchantOrder.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=order_id)
    # A concurrent request with the same out_refund_no on this order committed while we waited.
    existing = MerchantRefund.objects.filter(
        merchant_id=order.merchant_id, out_refund_no=out_refund_no
    ).first()
    if existing is not None:
        return _existing_refund_or_conflict(existing, request_hash), False
    if order.status not in PAID_STATES:
        raise Conflict(_("Only a paid order can be refunded."), code="order_not_paid")
    left = order.amount - order.refunded_amount
    if amount > left:
        raise ValidationFailed(
            _("This is more than what is left to refund (%(left)d).") % {"left": left},
            code="refund_exceeds_paid",
            fields={"amount": [str(left)]},
        )
    merchant_lock_shared(merchant_id=order.merchant_id)
    settled = SettlementBatch.objects.filter(
        merchant_id=order.merchant_id, currency=order.currency, date=order.settlement_date
    ).exists()
    source = MerchantRefund.Source.AVAILABLE if settled else MerchantRefund.Source.PENDING
    fee_refund = fee_refund_for(
        fee=order.fee,
        amount=order.amount,
        refunded_before=order.refunded_amount,
        fee_refunded_before=order.fee_refunded,
        refund=amount,
    )
    refund = MerchantRefund.objects.create(
        merchant_id=order.merchant_id,
        order=order,
        out_refund_no=out_refund_no,
        amount=amount,
        fee_refund=fee_refund,
        reason=reason,
        source=source,
        initiated_by=initiated_by,
        request_hash=request_hash,
    )
    legs = [Leg(wallet_for(user_id=order.payer_id, currency=order.currency), amount)]
    if amount - fee_refund:
        kind = AccountKind.MERCHANT_AVAILABLE if settled else AccountKind.MERCHANT
        account = merchant_account(merchant_id=order.merchant_id, kind=kind, currency=order.currency)
        legs.append(Leg(account, -(amount - fee_refund)))
    if fee_refund:
        legs.append(Leg(account_for(kind=AccountKind.FEES, currency=order.currency), -fee_refund))
    # As in _charge: the writes that lock nothing shared (the order, the notification, the audit
    # entry) before the ledger's hot rows, the event heads last. A refund the ledger refuses
    # (merchant_balance_insufficient) rolls all of them back.
    order.refunded_amount += amount
    order.fee_refunded += fee_refund
    if order.refunded_amount == order.amount:
        order.status = Status.REFUNDED
    order.save(update_fields=["refunded_amount", "fee_refunded", "status"])
    _notify(
        order,
        NOTIFY_REFUND_SUCCEEDED,
        {**events.merchant_refund_payload(refund), "order": events.merchant_order_payload(order)},
        f"payments.refund:{refund.id}:succeeded",
    )
    if actor_id is not None:
        audit_record(
            actor_id=actor_id,
            action="payments.order.refund",
            target=order,
            details={
                "refund_id": refund.id,
                "amount": amount,
                "reason": reason,
                "initiated_by": initiated_by,
            },
            ip=ip,
        )
    try:
        ledger_post(
            kind=JournalEntry.Kind.MERCHANT_REFUND, reference=f"refund:{refund.id}", legs=legs, memo=reason
        )
    except InsufficientFunds:
        raise MerchantBalanceInsufficient(
            _("The merchant's balance is not enough for this refund.")
        ) from None
    core_events.publish(
        user_ids=[order.payer_id],
        type=events.ORDER_REFUNDED,
        data=events.order_refunded_payload(order, refund),
    )
    return refund, True
