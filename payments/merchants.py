"""Merchants (Payments II): creation, API keys, notification URL, fees, static QR, payouts.

A merchant's money sits in two ledger accounts of its own (``LedgerAccount.merchant``):
``merchant`` (paid to it, not settled yet) and ``merchant_available`` (settled, T+1:
withdrawable). Payments credit the first net of the fee, the fee goes to the platform ``fees``
account; settlement (``payments.settlement``) moves each ended day's net to the second; a payout
moves available money to the owner's wallet.

Fees are in basis points of the amount, rounded half up to the fen (WeChat Pay rounds the same
way); a refund gives back the share of the fee proportional to the refunded amount, computed on
the running total so that refunding everything returns exactly the fee charged
(:func:`fee_refund_for`).
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import timedelta

import qrcode
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core import audit
from superapp.core.errors import ApplicationError, Conflict, Forbidden, NotFound, ValidationFailed
from superapp.core.webhooks import webhook_url_check

from . import signing
from .ledger import InsufficientFunds, Leg, ledger_post, money_atomic, wallet_for
from .models import (
    AccountKind,
    Dispute,
    JournalEntry,
    LedgerAccount,
    Merchant,
    MerchantKey,
    MerchantPayout,
)
from .services import _check_amount, _lock_settings, pin_verify

MAX_MERCHANTS_PER_OWNER = 20


class MerchantBalanceInsufficient(ApplicationError):
    status_code = 409
    default_code = "merchant_balance_insufficient"


# --- fees -------------------------------------------------------------------------------------


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def fee_for(*, amount: int, rate_bps: int) -> int:
    """The fee of a payment: ``amount * rate / 10000`` rounded half up (0.6 % of 250 fen is 1.5 -> 2)."""
    return _round_half_up(amount * rate_bps, 10_000)


def fee_refund_for(
    *, fee: int, amount: int, refunded_before: int, fee_refunded_before: int, refund: int
) -> int:
    """The fee given back with a refund: the fee's share of everything refunded so far, minus
    what earlier refunds already gave back. Partial refunds that add up to the whole amount give
    back exactly ``fee``; no refund gives back more than its share rounded half up."""
    return _round_half_up(fee * (refunded_before + refund), amount) - fee_refunded_before


# --- ledger accounts --------------------------------------------------------------------------


def merchant_account(*, merchant_id: int, kind: str, currency: str) -> LedgerAccount:
    """One of the merchant's ledger accounts (``merchant`` or ``merchant_available``), created on
    first use with ``INSERT ... ON CONFLICT DO NOTHING`` (race-free). Does not lock."""
    account = LedgerAccount.objects.filter(kind=kind, merchant_id=merchant_id, currency=currency).first()
    if account is None:
        LedgerAccount.objects.bulk_create(
            [LedgerAccount(kind=kind, merchant_id=merchant_id, currency=currency)], ignore_conflicts=True
        )
        account = LedgerAccount.objects.get(kind=kind, merchant_id=merchant_id, currency=currency)
    return account


def merchant_lock_shared(*, merchant_id: int) -> None:
    """``SELECT ... FOR KEY SHARE`` on the merchant row: payments and refunds take it (they do
    not block one another), settlement takes ``FOR UPDATE`` (it waits for them, and they for it),
    so a payment's business day and a refund's source are decided on a settled-or-not state that
    cannot change before they commit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM payments_merchant WHERE id = %s FOR KEY SHARE", [merchant_id])


# --- creation and settings --------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    """An API key as issued: the secret is shown this once and never again."""

    merchant: Merchant
    key: MerchantKey
    secret: str


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 64:
        raise ValidationFailed(fields={"name": [_("Between 1 and 64 characters.")]})
    return name.strip()


def check_notify_url(url: object, field: str = "notify_url") -> str:
    """An http(s) URL that may receive notifications (checked by ``superapp.core.webhooks``,
    which resolves the host: call outside transactions). Empty: no notifications."""
    if url in (None, ""):
        return ""
    if not isinstance(url, str) or len(url) > 500:
        raise ValidationFailed(fields={field: [_("At most 500 characters.")]})
    try:
        webhook_url_check(url=url)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, code=exc.code, fields={field: [exc.message]}) from None
    return url


def _new_key(merchant: Merchant) -> tuple[MerchantKey, str]:
    secret = signing.new_secret()
    key = MerchantKey.objects.create(
        merchant=merchant, key_id=signing.new_key_id(), secret_encrypted=signing.secret_encrypt(secret)
    )
    return key, secret


def merchant_create(
    *,
    owner_id: int,
    name: str,
    notify_url: str = "",
    kind: str = Merchant.Kind.BUSINESS,
    external_ref: str = "",
    currency: str | None = None,
) -> IssuedKey:
    """Open a merchant for ``owner_id`` with its ledger accounts and a first API key (the
    secret is returned once). ``kind``/``external_ref`` name an official account or mini-program
    that takes payments through it: the caller (that app's service) must have checked that
    ``owner_id`` administers it; the public API opens only ``business`` merchants.

    Raises:
        Conflict ``too_many_merchants``: the owner has ``MAX_MERCHANTS_PER_OWNER`` already.
        Conflict ``merchant_exists``: that official account or mini-program has one (also when
            two are opened at the same moment).
    """
    name = _check_name(name)
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    if currency not in settings.PAYMENTS_CURRENCIES:
        raise ValidationFailed(
            fields={"currency": [_("This currency is not supported.")]}, code="unsupported_currency"
        )
    if kind not in Merchant.Kind.values:
        raise ValidationFailed(fields={"kind": [_("Not a known kind.")]})
    if not isinstance(external_ref, str) or len(external_ref) > 64:
        raise ValidationFailed(fields={"external_ref": [_("At most 64 characters.")]})
    if kind != Merchant.Kind.BUSINESS and not external_ref:
        raise ValidationFailed(fields={"external_ref": [_("Name the official account or mini-program.")]})
    notify_url = check_notify_url(notify_url)
    with transaction.atomic():
        # The owner's wallet settings row serializes one owner's creations: the count below
        # cannot be passed by two requests at once.
        _lock_settings(owner_id)
        if Merchant.objects.filter(owner_id=owner_id).count() >= MAX_MERCHANTS_PER_OWNER:
            raise Conflict(_("You already have the maximum number of merchants."), code="too_many_merchants")
        if external_ref and Merchant.objects.filter(kind=kind, external_ref=external_ref).exists():
            raise Conflict(_("This one already has a merchant."), code="merchant_exists")
        try:
            with transaction.atomic():
                merchant = Merchant.objects.create(
                    owner_id=owner_id,
                    kind=kind,
                    external_ref=external_ref,
                    name=name,
                    currency=currency,
                    fee_rate_bps=settings.PAYMENTS_MERCHANT_FEE_BPS,
                    notify_url=notify_url,
                    notify_secret="whsec_" + secrets.token_urlsafe(32),
                    static_code=secrets.token_urlsafe(24),
                )
        except IntegrityError:  # the same official account or mini-program, by someone else, at once
            raise Conflict(_("This one already has a merchant."), code="merchant_exists") from None
        for account_kind in (AccountKind.MERCHANT, AccountKind.MERCHANT_AVAILABLE):
            merchant_account(merchant_id=merchant.id, kind=account_kind, currency=currency)
        key, secret = _new_key(merchant)
    return IssuedKey(merchant=merchant, key=key, secret=secret)


def _owned(*, user_id: int, merchant_id: int, lock: bool = False) -> Merchant:
    qs = Merchant.objects.select_for_update() if lock else Merchant.objects
    merchant = qs.filter(pk=merchant_id, owner_id=user_id).first()
    if merchant is None:
        raise NotFound()
    return merchant


def merchant_update(
    *, user_id: int, merchant_id: int, name: str | None = None, notify_url: str | None = None
) -> Merchant:
    """Rename the merchant or change its notification URL (owner only; 404 for anyone else)."""
    _owned(user_id=user_id, merchant_id=merchant_id)
    fields = {}
    if name is not None:
        fields["name"] = _check_name(name)
    if notify_url is not None:
        fields["notify_url"] = check_notify_url(notify_url)
    with transaction.atomic():
        merchant = _owned(user_id=user_id, merchant_id=merchant_id, lock=True)
        for field, value in fields.items():
            setattr(merchant, field, value)
        if fields:
            merchant.save(update_fields=list(fields))
    return merchant


def merchant_key_rotate(*, user_id: int, merchant_id: int, grace: timedelta | None = None) -> IssuedKey:
    """Issue a new API key; the current ones keep working for ``grace`` (default
    ``PAYMENTS_MERCHANT_KEY_GRACE``; 0 revokes them now), long enough to deploy the new one."""
    grace = settings.PAYMENTS_MERCHANT_KEY_GRACE if grace is None else grace
    if grace < timedelta(0) or grace > timedelta(days=7):
        raise ValidationFailed(fields={"grace_hours": [_("Between 0 and 168 hours.")]})
    with transaction.atomic():
        merchant = _owned(user_id=user_id, merchant_id=merchant_id, lock=True)
        until = timezone.now() + grace
        live = MerchantKey.objects.filter(merchant=merchant)
        live.filter(expires_at__isnull=True).update(expires_at=until)
        live.filter(expires_at__gt=until).update(expires_at=until)
        key, secret = _new_key(merchant)
    return IssuedKey(merchant=merchant, key=key, secret=secret)


def merchant_notify_secret_rotate(*, user_id: int, merchant_id: int) -> Merchant:
    """A new secret for signing notifications (those already queued keep the old signature)."""
    with transaction.atomic():
        merchant = _owned(user_id=user_id, merchant_id=merchant_id, lock=True)
        merchant.notify_secret = "whsec_" + secrets.token_urlsafe(32)
        merchant.save(update_fields=["notify_secret"])
    return merchant


@transaction.atomic
def merchant_staff_update(
    *,
    actor_id: int,
    merchant_id: int,
    status: str | None = None,
    fee_rate_bps: int | None = None,
    ip: str | None = None,
) -> Merchant:
    """Staff: suspend or reactivate a merchant, change its fee rate (new orders use it); audited."""
    merchant = Merchant.objects.select_for_update().filter(pk=merchant_id).first()
    if merchant is None:
        raise NotFound()
    before = {"status": merchant.status, "fee_rate_bps": merchant.fee_rate_bps}
    if status is not None:
        if status not in Merchant.Status.values:
            raise ValidationFailed(fields={"status": [_("active or suspended")]})
        merchant.status = status
    if fee_rate_bps is not None:
        if type(fee_rate_bps) is not int or not 0 <= fee_rate_bps <= 10_000:
            raise ValidationFailed(fields={"fee_rate_bps": [_("Between 0 and 10000.")]})
        merchant.fee_rate_bps = fee_rate_bps
    after = {"status": merchant.status, "fee_rate_bps": merchant.fee_rate_bps}
    if after != before:
        merchant.save(update_fields=["status", "fee_rate_bps"])
        audit.audit_record(
            actor_id=actor_id,
            action="payments.merchant.update",
            target=merchant,
            details={"before": before, "after": after},
            ip=ip,
        )
    return merchant


def check_active(merchant: Merchant) -> None:
    if merchant.status != Merchant.Status.ACTIVE:
        raise Forbidden(_("This merchant cannot take payments at the moment."), code="merchant_suspended")


# --- QR codes ---------------------------------------------------------------------------------


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text, box_size=8, border=2).save(buffer, format="PNG")
    return buffer.getvalue()


def static_qr_url(merchant: Merchant) -> str:
    """What the merchant's static QR code carries: the payer's app opens it and asks for the amount."""
    return f"{settings.PAYMENTS_PAY_URL}/merchant?code={merchant.static_code}"


def merchant_static_qr_png(*, user_id: int, merchant_id: int) -> bytes:
    return qr_png(static_qr_url(_owned(user_id=user_id, merchant_id=merchant_id)))


# --- payouts ----------------------------------------------------------------------------------


PAYOUT_HELD_DISPUTE_STATES = (Dispute.Status.OPEN, Dispute.Status.RESOLVING_CUSTOMER)


def merchant_disputed_amount(*, merchant_id: int, currency: str) -> int:
    """What the merchant's open disputes (and those being resolved for the customer) could still
    refund: held back from payouts, so a dispute won by the customer always finds the money."""
    held = Dispute.objects.filter(
        order__merchant_id=merchant_id, order__currency=currency, status__in=PAYOUT_HELD_DISPUTE_STATES
    ).aggregate(total=Sum("amount"))["total"]
    return held or 0


def _check_payout(merchant: Merchant, *, amount: int, available: int) -> None:
    if merchant.status != Merchant.Status.ACTIVE:
        raise Forbidden(_("This merchant is suspended: payouts are stopped."), code="merchant_suspended")
    held = merchant_disputed_amount(merchant_id=merchant.id, currency=merchant.currency)
    if amount > available - held:
        message = _("The merchant's withdrawable balance is not enough.")
        if held:
            message = _(
                "The merchant's withdrawable balance is not enough: %(held)d is held for open disputes."
            ) % {"held": held}
        raise MerchantBalanceInsufficient(message)


def merchant_payout(*, user_id: int, merchant_id: int, amount: int, pin: str) -> MerchantPayout:
    """Move settled money (``merchant_available``) to the owner's wallet (PIN required).

    Only an active merchant pays out, and never the amount of its open disputes: at most
    ``available - merchant_disputed_amount``. Both are checked again under the merchant's row
    lock, which staff suspending it and settlement wait for.

    Raises:
        Forbidden ``merchant_suspended``: the merchant is suspended.
        MerchantBalanceInsufficient: more than the available balance less open disputes.
    """
    merchant = _owned(user_id=user_id, merchant_id=merchant_id)
    _check_amount(amount, merchant.currency)
    available = merchant_account(
        merchant_id=merchant.id, kind=AccountKind.MERCHANT_AVAILABLE, currency=merchant.currency
    )
    _check_payout(merchant, amount=amount, available=available.balance)  # early and friendly
    pin_verify(user_id=user_id, pin=pin)
    return _merchant_payout(
        merchant_id=merchant.id, user_id=user_id, amount=amount, currency=merchant.currency
    )


@money_atomic
def _merchant_payout(*, merchant_id: int, user_id: int, amount: int, currency: str) -> MerchantPayout:
    # FOR NO KEY UPDATE: payouts of one merchant queue here, and so do staff changing its status
    # and settlement (FOR UPDATE); payments and refunds (FOR KEY SHARE) do not wait.
    merchant = Merchant.objects.select_for_update(no_key=True).get(pk=merchant_id)
    available = merchant_account(
        merchant_id=merchant_id, kind=AccountKind.MERCHANT_AVAILABLE, currency=currency
    )
    available.refresh_from_db(fields=["balance"])  # read under the merchant lock: payouts are serialized
    _check_payout(merchant, amount=amount, available=available.balance)
    payout = MerchantPayout.objects.create(
        merchant_id=merchant_id, amount=amount, currency=currency, requested_by_id=user_id
    )
    try:
        entry = ledger_post(
            kind=JournalEntry.Kind.MERCHANT_PAYOUT,
            reference=f"merchant_payout:{payout.id}",
            legs=[Leg(available, -amount), Leg(wallet_for(user_id=user_id, currency=currency), amount)],
        )
    except InsufficientFunds:
        raise MerchantBalanceInsufficient(_("The merchant's withdrawable balance is not enough.")) from None
    payout.entry = entry
    payout.save(update_fields=["entry"])
    return payout
