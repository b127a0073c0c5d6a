"""Writes of the payments app (its public write interface).

Money services are wrapped in :func:`payments.ledger.money_atomic` (``atomic(durable=True)`` plus
a bounded retry of deadlocks and serialization failures). Lock order inside one transaction:
the business row (transfer, top-up) or the payer's :class:`WalletSettings` row, then ledger
accounts in ascending id order in one query, then the chat's conversation row (messaging's
``payment_message_*``, when the movement shows in a chat), then event stream heads (``publish``,
last).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import selectors as account_selectors
from messaging import selectors as chat_selectors
from messaging import services as chat_services
from superapp.core import events as core_events
from superapp.core.errors import ApplicationError, Conflict, Forbidden, NotFound, ValidationFailed
from superapp.core.prepared import PreparedStatement

from . import events, pins
from .ledger import Leg, account_for, ledger_post, ledger_post_rows, money_atomic, wallet_for
from .models import (
    AccountKind,
    Card,
    JournalEntry,
    LedgerAccount,
    MerchantOrder,
    ProviderEvent,
    RedPacket,
    TopUp,
    Transfer,
    WalletSettings,
    Withdrawal,
)
from .providers import PROVIDERS, CardSetup, Provider, ProviderError, ProviderUnavailable, get_provider

logger = logging.getLogger(__name__)


class PinCheckUnavailable(ApplicationError):
    status_code = 503
    default_code = "pin_check_unavailable"
    default_message = gettext_lazy("Payments are unavailable at the moment. Try again later.")


class PinLocked(ApplicationError):
    status_code = 403
    default_code = "pin_locked"


# --- settings and PIN -------------------------------------------------------------------------


def wallet_settings_get(*, user_id: int) -> WalletSettings:
    """The user's wallet settings, created with defaults on first use (race-free)."""
    row = WalletSettings.objects.filter(user_id=user_id).first()
    if row is None:
        WalletSettings.objects.bulk_create([WalletSettings(user_id=user_id)], ignore_conflicts=True)
        row = WalletSettings.objects.get(user_id=user_id)
    return row


def _lock_settings(user_id: int) -> WalletSettings:
    wallet_settings_get(user_id=user_id)
    return WalletSettings.objects.select_for_update().get(user_id=user_id)


def _check_pin_format(pin: str, field: str = "pin") -> None:
    if not isinstance(pin, str) or not re.fullmatch(r"[0-9]{6}", pin):
        raise ValidationFailed(
            fields={field: [_("The payment PIN is exactly 6 digits.")]}, code="invalid_pin_format"
        )


@transaction.atomic
def wallet_settings_update(*, user_id: int, auto_accept_transfers: bool | None = None) -> WalletSettings:
    row = _lock_settings(user_id)
    if auto_accept_transfers is not None:
        row.auto_accept_transfers = auto_accept_transfers
        row.save(update_fields=["auto_accept_transfers"])
    return row


@transaction.atomic
def wallet_verification_level_set(*, user_id: int, level: str) -> WalletSettings:
    """Record the user's verification level (staff, after a real-name check); it picks the limits."""
    if level not in WalletSettings.Level.values:
        raise ValidationFailed(fields={"level": [_("unverified or verified")]})
    row = _lock_settings(user_id)
    row.verification_level = level
    row.save(update_fields=["verification_level"])
    return row


@transaction.atomic
def pin_set(*, user_id: int, pin: str) -> None:
    """Set the first payment PIN (changing one goes through :func:`pin_change`)."""
    _check_pin_format(pin)
    row = _lock_settings(user_id)
    if row.pin_hash:
        raise Conflict(_("A payment PIN is already set; change or reset it."), code="pin_already_set")
    row.pin_hash = pins.pin_hash(pin)
    row.pin_failed_attempts = 0
    row.save(update_fields=["pin_hash", "pin_failed_attempts"])


def pin_change(*, user_id: int, old_pin: str, pin: str) -> None:
    """Change the PIN: the old one is verified first (a wrong one counts toward the lock)."""
    _check_pin_format(pin)
    pin_verify(user_id=user_id, pin=old_pin)
    with transaction.atomic():
        row = _lock_settings(user_id)
        row.pin_hash = pins.pin_hash(pin)
        row.save(update_fields=["pin_hash"])


def pin_reset(*, user_id: int, password: str, pin: str) -> None:
    """Forgotten PIN: the account password proves the owner; clears the lock."""
    _check_pin_format(pin)
    user = account_selectors.user_get(user_id=user_id)
    if not user.check_password(password):
        raise Forbidden(_("Wrong password."), code="invalid_password")
    with transaction.atomic():
        row = _lock_settings(user_id)
        row.pin_hash = pins.pin_hash(pin)
        row.pin_failed_attempts = 0
        row.pin_locked_until = None
        row.save(update_fields=["pin_hash", "pin_failed_attempts", "pin_locked_until"])


def pin_verify(*, user_id: int, pin: str) -> None:
    """Check the payment PIN. Wrong tries are committed even though this raises; after
    ``PAYMENTS_PIN_MAX_ATTEMPTS`` payments are locked for ``PAYMENTS_PIN_LOCK``.

    Raises:
        Forbidden ``pin_not_set``, ``invalid_pin``; PinLocked ``pin_locked``;
        PinCheckUnavailable ``pin_check_unavailable`` (503) when the hash's key is missing.
    """
    with transaction.atomic():
        row = _lock_settings(user_id)
        failure, changes = _pin_outcome(row, pin)
        if changes:
            WalletSettings.objects.filter(pk=user_id).update(**changes)
    if failure is not None:
        raise failure


def _pin_outcome(row: WalletSettings, pin: str) -> tuple[ApplicationError | None, dict[str, Any]]:
    """Judge ``pin`` against the settings row (the caller holds its lock): the error to raise
    (None: right PIN) and the columns to write (a wrong try counted, a lock, a counter reset, a
    re-hash under the current key). Writes nothing.

    Raises:
        PinCheckUnavailable: the hash names a key this server does not have (no try counted).
    """
    now = timezone.now()
    if not row.pin_hash:
        return Forbidden(_("Set a payment PIN first."), code="pin_not_set"), {}
    if row.pin_locked_until and row.pin_locked_until > now:
        return PinLocked(_("Too many wrong PINs. Payments are locked for a while.")), {}
    try:
        ok, rehash = pins.pin_matches(pin, row.pin_hash) if isinstance(pin, str) else (False, False)
    except pins.PinKeyMissing as exc:
        # The server lost the key of this hash: not the user's mistake, no attempt counted.
        logger.error("payments.pin_key_missing", extra={"user_id": row.user_id, "key_id": str(exc)})
        raise PinCheckUnavailable() from None
    if ok:
        changes: dict[str, Any] = {}
        if rehash:  # hashed under an older key or hasher: re-hash under the current key
            changes["pin_hash"] = pins.pin_hash(pin)
        if row.pin_failed_attempts:
            changes["pin_failed_attempts"] = 0
        return None, changes
    attempts = row.pin_failed_attempts + 1
    if attempts >= settings.PAYMENTS_PIN_MAX_ATTEMPTS:
        failure: ApplicationError = PinLocked(_("Too many wrong PINs. Payments are locked for 3 hours."))
        return failure, {"pin_failed_attempts": 0, "pin_locked_until": now + settings.PAYMENTS_PIN_LOCK}
    left = settings.PAYMENTS_PIN_MAX_ATTEMPTS - attempts
    failure = Forbidden(_("Wrong payment PIN (%(left)d tries left).") % {"left": left}, code="invalid_pin")
    return failure, {"pin_failed_attempts": attempts}


# --- amounts and limits -----------------------------------------------------------------------


def _check_amount(amount: int, currency: str) -> None:
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed(fields={"amount": [_("A positive whole number of minor units (fen).")]})
    if currency not in settings.PAYMENTS_CURRENCIES:
        raise ValidationFailed(
            fields={"currency": [_("This currency is not supported.")]}, code="unsupported_currency"
        )


def _day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


# What the payer spent today in one currency: transfers not refunded, red packets, withdrawals not
# failed, payments to merchants net of their refunds. One statement (PostgreSQL) instead of four.
_SPENT_TODAY_SQL = """
  (SELECT coalesce(sum(amount), 0) FROM payments_transfer
    WHERE sender_id = %(user_id)s AND currency = %(currency)s AND created_at >= %(today)s AND status <> 'refunded')
+ (SELECT coalesce(sum(total_amount), 0) FROM payments_redpacket
    WHERE sender_id = %(user_id)s AND currency = %(currency)s AND created_at >= %(today)s)
+ (SELECT coalesce(sum(amount), 0) FROM payments_withdrawal
    WHERE user_id = %(user_id)s AND currency = %(currency)s AND created_at >= %(today)s AND status <> 'failed')
+ (SELECT coalesce(sum(amount - refunded_amount), 0) FROM payments_merchantorder
    WHERE payer_id = %(user_id)s AND currency = %(currency)s AND paid_at >= %(today)s)
"""


def _spent_today(*, user_id: int, currency: str) -> int:
    """The payer's spending today that counts toward the daily limit (see ``_SPENT_TODAY_SQL``)."""
    today = _day_start(timezone.now())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {_SPENT_TODAY_SQL}", {"user_id": user_id, "currency": currency, "today": today}
            )
            return int(cursor.fetchone()[0])
    transfers = (
        Transfer.objects.filter(sender_id=user_id, currency=currency, created_at__gte=today)
        .exclude(status=Transfer.Status.REFUNDED)
        .aggregate(total=Sum("amount"))["total"]
    )
    packets = RedPacket.objects.filter(sender_id=user_id, currency=currency, created_at__gte=today).aggregate(
        total=Sum("total_amount")
    )["total"]
    withdrawals = (
        Withdrawal.objects.filter(user_id=user_id, currency=currency, created_at__gte=today)
        .exclude(status=Withdrawal.Status.FAILED)
        .aggregate(total=Sum("amount"))["total"]
    )
    merchant_payments = MerchantOrder.objects.filter(
        payer_id=user_id, currency=currency, paid_at__gte=today
    ).aggregate(total=Sum(F("amount") - F("refunded_amount")))["total"]
    return (transfers or 0) + (packets or 0) + (withdrawals or 0) + (merchant_payments or 0)


def _check_limits(*, payer: WalletSettings, amount: int, currency: str, spent: int | None = None) -> None:
    """Per-payment and per-day limits of the payer's level. Caller holds the payer's settings
    row lock, which serializes one payer's payments so the daily sum cannot be raced. ``spent``:
    today's spending when the caller read it already (after taking that lock)."""
    limits = settings.PAYMENTS_LIMITS[payer.verification_level]
    if amount > limits["per_payment"]:
        raise ValidationFailed(
            _("This amount is over your per-payment limit."),
            code="limit_per_payment",
            fields={"amount": [str(limits["per_payment"])]},
        )
    if spent is None:
        spent = _spent_today(user_id=payer.user_id, currency=currency)
    if spent + amount > limits["per_day"]:
        raise ValidationFailed(_("This payment would exceed your daily limit."), code="limit_per_day")


# --- top-ups ----------------------------------------------------------------------------------


def _customer_id(*, user_id: int, provider: Provider) -> str:
    """The user's customer at the provider, created on first use (outside any transaction)."""
    current = wallet_settings_get(user_id=user_id).provider_customer_id
    if current:
        return current
    created = provider.customer_create(user_id=user_id)
    # Two first uses racing: the first one stored wins; the other customer stays unused.
    WalletSettings.objects.filter(user_id=user_id, provider_customer_id="").update(
        provider_customer_id=created
    )
    return WalletSettings.objects.values_list("provider_customer_id", flat=True).get(user_id=user_id)


def card_setup(*, user_id: int) -> CardSetup:
    """Start linking a card: the app confirms the returned SetupIntent with the provider's SDK."""
    provider = get_provider()
    return provider.card_setup(customer_id=_customer_id(user_id=user_id, provider=provider))


def card_link(*, user_id: int, payment_method_id: str) -> Card:
    """Attach a confirmed payment method to the user's customer and remember it."""
    if not payment_method_id or len(payment_method_id) > 255:
        raise ValidationFailed(fields={"payment_method_id": [_("Give the payment method id.")]})
    provider = get_provider()
    info = provider.card_attach(
        customer_id=_customer_id(user_id=user_id, provider=provider), payment_method_id=payment_method_id
    )
    with transaction.atomic():
        existing = Card.objects.filter(provider=provider.name, provider_ref=info.provider_ref).first()
        if existing is not None:
            if existing.user_id != user_id:
                raise Conflict(_("This card is linked to another account."), code="card_in_use")
            return existing
        return Card.objects.create(
            user_id=user_id,
            provider=provider.name,
            provider_ref=info.provider_ref,
            brand=info.brand,
            last4=info.last4,
            exp_month=info.exp_month,
            exp_year=info.exp_year,
        )


def card_remove(*, user_id: int, card_id: int) -> None:
    card = Card.objects.filter(pk=card_id, user_id=user_id).first()
    if card is None:
        raise NotFound()
    get_provider().card_detach(payment_method_id=card.provider_ref)
    Card.objects.filter(pk=card.pk).delete()


def top_up_create(
    *, user_id: int, amount: int, currency: str | None = None, card_id: int | None = None
) -> TopUp:
    """Add money from a card. The sandbox provider succeeds at once; Stripe credits the wallet
    when its signed webhook arrives (:func:`provider_event_handle`)."""
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    _check_amount(amount, currency)
    if amount > settings.PAYMENTS_TOP_UP_MAX:
        raise ValidationFailed(
            fields={"amount": [_("At most %(max)d per top-up.") % {"max": settings.PAYMENTS_TOP_UP_MAX}]}
        )
    provider = get_provider()
    card = None
    if card_id is not None:
        card = Card.objects.filter(pk=card_id, user_id=user_id, provider=provider.name).first()
        if card is None:
            raise ValidationFailed(fields={"card_id": [_("Not one of your cards.")]})
    customer_id = _customer_id(user_id=user_id, provider=provider)
    top_up = TopUp.objects.create(user_id=user_id, amount=amount, currency=currency, provider=provider.name)
    # Outside any transaction: the provider may be an HTTP service.
    try:
        result = provider.start_top_up(
            top_up_id=top_up.id,
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            payment_method_id=card.provider_ref if card else None,
        )
    except ApplicationError:
        TopUp.objects.filter(pk=top_up.pk, status=TopUp.Status.PENDING).update(status=TopUp.Status.FAILED)
        raise
    TopUp.objects.filter(pk=top_up.pk).update(provider_ref=result.provider_ref)
    if result.succeeded:
        return top_up_settle(top_up_id=top_up.id)
    top_up.provider_ref = result.provider_ref
    return top_up


@money_atomic
def top_up_settle(*, top_up_id: int) -> TopUp:
    """Credit a top-up the provider confirmed. Safe to call twice (the second does nothing)."""
    top_up = TopUp.objects.select_for_update().get(pk=top_up_id)
    _top_up_credit(top_up)
    return top_up


def _top_up_credit(top_up: TopUp) -> None:
    """Caller holds the top-up's row lock inside a money transaction."""
    if top_up.status == TopUp.Status.SUCCEEDED:
        return
    wallet = wallet_for(user_id=top_up.user_id, currency=top_up.currency)
    clearing = account_for(kind=AccountKind.PROVIDER_CLEARING, currency=top_up.currency)
    ledger_post(
        kind=JournalEntry.Kind.TOP_UP,
        reference=f"topup:{top_up.id}",
        legs=[Leg(clearing, -top_up.amount), Leg(wallet, top_up.amount)],
    )
    top_up.status = TopUp.Status.SUCCEEDED
    top_up.save(update_fields=["status"])
    balance = LedgerAccount.objects.values_list("balance", flat=True).get(pk=wallet.pk)
    core_events.publish(
        user_ids=[top_up.user_id],
        type=events.TOP_UP_SUCCEEDED,
        data=events.top_up_payload(top_up, balance=balance),
    )


@money_atomic
def provider_event_handle(*, provider: str, event_id: str, type: str, obj: dict) -> str:
    """Apply one verified webhook event, exactly once; returns the outcome (kept on the row).

    The event id is inserted under a unique constraint in the same transaction as the effect:
    a replay (or a concurrent duplicate delivery) finds it and does nothing. Events may come
    out of order: a failure after a success changes nothing, a success after a failure credits.
    Unknown types are recorded and ignored.
    """
    try:
        with transaction.atomic():
            row = ProviderEvent.objects.create(provider=provider, event_id=event_id, type=type, outcome="")
    except IntegrityError:
        return "duplicate"
    outcome = "ignored"
    if type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        top_up = (
            TopUp.objects.select_for_update()
            .filter(provider=provider, provider_ref=obj.get("id", ""))
            .first()
        )
        if top_up is None:
            outcome = "unknown_object"
            logger.warning(
                "payments.webhook_unknown_object", extra={"event_id": event_id, "object": obj.get("id")}
            )
        elif type == "payment_intent.payment_failed":
            if top_up.status == TopUp.Status.PENDING:
                top_up.status = TopUp.Status.FAILED
                top_up.save(update_fields=["status"])
                outcome = "failed"
        elif (
            obj.get("amount_received", obj.get("amount")) != top_up.amount
            or str(obj.get("currency", "")).upper() != top_up.currency
        ):
            outcome = "amount_mismatch"
            logger.error(
                "payments.webhook_amount_mismatch", extra={"event_id": event_id, "top_up_id": top_up.id}
            )
        elif top_up.status == TopUp.Status.SUCCEEDED:
            outcome = "already_credited"
        else:
            _top_up_credit(top_up)
            outcome = "credited"
    elif type in ("payout.paid", "payout.failed"):
        withdrawal = (
            Withdrawal.objects.select_for_update()
            .filter(provider=provider, provider_ref=obj.get("id", ""))
            .first()
        )
        if withdrawal is None:
            outcome = "unknown_object"
            logger.warning(
                "payments.webhook_unknown_object", extra={"event_id": event_id, "object": obj.get("id")}
            )
        elif _withdrawal_finish(
            withdrawal,
            paid=type == "payout.paid",
            reason=str(obj.get("failure_message") or obj.get("failure_code") or ""),
        ):
            outcome = "paid" if type == "payout.paid" else "returned"
    elif type.startswith("identity.verification_session."):
        from . import verification  # real-name verification (it imports this module)

        if type in verification.SESSION_EVENTS:
            outcome = verification.verification_event_apply(provider=provider, type=type, obj=obj)
    row.outcome = outcome
    row.save(update_fields=["outcome"])
    return outcome


# --- transfers --------------------------------------------------------------------------------


def transfer_create(
    *,
    sender_id: int,
    receiver_id: int,
    amount: int,
    pin: str,
    note: str = "",
    currency: str | None = None,
    conversation_id: int | None = None,
) -> Transfer:
    """Send money to a friend, shown as a ``transfer`` message in their direct chat (created on
    first use), or to one member of a group, shown in the group (``conversation_id``). It waits
    in escrow until the receiver accepts it, or goes back to the sender after
    ``PAYMENTS_TRANSFER_TTL``; when the receiver auto-accepts, it goes straight from wallet to
    wallet in one journal entry and is born ``accepted``. Who may receive, checked before the
    PIN, so a refusal spends no PIN try: in a direct chat, whoever the sender may message
    (messaging's rule: friends, or a receiver who accepts strangers; no block either way); in a
    group, another active member, friend or not, with no block either way
    (``messaging.selectors.payment_receiver_check``: 404 for a group the sender is not in, as
    messaging answers); auto-accept then applies only between friends or when the receiver
    accepts strangers, else it waits for the receiver's accept. A direct chat's id as
    ``conversation_id`` is the direct path: the receiver must be its peer.

    One money transaction does it all: the chat rule, the payer's settings row locked, the PIN
    judged, the limits, the ledger entry with the transfer row (one statement on PostgreSQL),
    the chat message and the events. A wrong PIN ends it early: the counted try (or the lock)
    is committed, nothing else, and the error raised after the commit.
    """
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    _check_amount(amount, currency)
    if len(note) > 100:
        raise ValidationFailed(fields={"note": [_("At most 100 characters.")]})
    if receiver_id == sender_id:
        raise ValidationFailed(_("You cannot transfer to yourself."), code="self_transfer")
    pin_state_first = True
    while True:
        outcome = _transfer_create(
            sender_id=sender_id,
            receiver_id=receiver_id,
            amount=amount,
            pin=pin,
            note=note,
            currency=currency,
            conversation_id=conversation_id,
            pin_state_first=pin_state_first,
        )
        if isinstance(outcome, Transfer):
            return outcome
        if isinstance(outcome, ApplicationError):
            raise outcome  # a wrong PIN: its try is committed
        # A right PIN whose row had to change (a counter reset, a re-hash): committed on its
        # own first, as pin_verify would, so that it holds even if the transfer then fails.
        pin_state_first = False


# The payer's settings row, locked: the PIN, its counter, the level of the limits. Taken first,
# in its own statement, so that the reads after it (today's spending) see every payment of this
# payer committed before the lock was granted.
_PAYER_LOCK_SQL = """
SELECT pin_hash, pin_failed_attempts, pin_locked_until, verification_level, auto_accept_transfers
  FROM payments_walletsettings WHERE user_id = %s FOR UPDATE
"""
# Everything else a transfer reads, in one round trip: the receiver's auto-accept, the payer's
# spending today, the three accounts (NULL when not made yet), and the transfer's id.
_TRANSFER_READS_SQL = """
SELECT (SELECT auto_accept_transfers FROM payments_walletsettings WHERE user_id = %(receiver_id)s),
       {spent},
       (SELECT id FROM payments_ledgeraccount
         WHERE kind = 'wallet' AND owner_id = %(user_id)s AND currency = %(currency)s),
       (SELECT id FROM payments_ledgeraccount
         WHERE kind = 'wallet' AND owner_id = %(receiver_id)s AND currency = %(currency)s),
       (SELECT id FROM payments_ledgeraccount
         WHERE kind = 'transfer_escrow' AND owner_id = %(user_id)s AND currency = %(currency)s),
       nextval(pg_get_serial_sequence('payments_transfer', 'id'))
""".replace("{spent}", _SPENT_TODAY_SQL)
_TRANSFER_READS = PreparedStatement("transfer_reads", _TRANSFER_READS_SQL)
# The transfer row, inserted with its ledger entry (``ledger_post_rows``), only when it is funded.
_TRANSFER_INSERT_CTE = """,
transfer AS (
    INSERT INTO payments_transfer
        (id, sender_id, receiver_id, amount, currency, note, status, created_at, expires_at, resolved_at)
    SELECT %(t_id)s, %(t_sender)s, %(t_receiver)s, %(t_amount)s, %(t_currency)s, %(t_note)s, %(t_status)s,
           %(t_now)s, %(t_expires)s, %(t_resolved)s::timestamptz
      FROM ok WHERE ok.funded
)"""


def _payer_lock(user_id: int) -> WalletSettings | None:
    """The payer's settings row, locked (None: never made, so no PIN either)."""
    if connection.vendor != "postgresql":
        return _lock_settings(user_id)
    with connection.cursor() as cursor:
        cursor.execute(_PAYER_LOCK_SQL, [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    payer = WalletSettings(
        user_id=user_id,
        pin_hash=row[0],
        pin_failed_attempts=row[1],
        pin_locked_until=row[2],
        verification_level=row[3],
        auto_accept_transfers=row[4],
    )
    payer._state.adding, payer._state.db = False, connection.alias
    return payer


def _transfer_reads(
    *, sender_id: int, receiver_id: int, currency: str, may_auto_accept: bool = True
) -> tuple[bool, int, int, int, int | None, int | None]:
    """(receiver auto-accepts, payer's spending today, sender's wallet, receiver's wallet,
    sender's escrow, the new transfer's id or None). Accounts are made on first use.
    ``may_auto_accept`` False (a group transfer from a stranger): pending whatever the receiver's
    setting, so the escrow is made if missing."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _TRANSFER_READS.execute(
                cursor,
                {
                    "user_id": sender_id,
                    "receiver_id": receiver_id,
                    "currency": currency,
                    "today": _day_start(timezone.now()),
                },
            )
            auto_accept, spent, sender_wallet, receiver_wallet, escrow, transfer_id = cursor.fetchone()
        auto_accept = bool(auto_accept) and may_auto_accept
        # First payments of a user: make the missing accounts (race-free get-or-create).
        if sender_wallet is None:
            sender_wallet = wallet_for(user_id=sender_id, currency=currency).id
        if receiver_wallet is None:
            receiver_wallet = wallet_for(user_id=receiver_id, currency=currency).id
        if escrow is None and not auto_accept:
            escrow = account_for(kind=AccountKind.TRANSFER_ESCROW, owner_id=sender_id, currency=currency).id
        return bool(auto_accept), int(spent), sender_wallet, receiver_wallet, escrow, transfer_id
    return (
        wallet_settings_get(user_id=receiver_id).auto_accept_transfers and may_auto_accept,
        _spent_today(user_id=sender_id, currency=currency),
        wallet_for(user_id=sender_id, currency=currency).id,
        wallet_for(user_id=receiver_id, currency=currency).id,
        account_for(kind=AccountKind.TRANSFER_ESCROW, owner_id=sender_id, currency=currency).id,
        None,
    )


@money_atomic
def _transfer_create(
    *,
    sender_id: int,
    receiver_id: int,
    amount: int,
    pin: str,
    note: str,
    currency: str,
    conversation_id: int | None,
    pin_state_first: bool,
) -> Transfer | ApplicationError | None:
    """The money transaction of :func:`transfer_create`. Returns the transfer; or, to be
    committed and then raised, a wrong PIN's error; or None when a right PIN changed its row
    (``pin_state_first``) and that alone is committed: the caller runs it again."""
    # The chat's rule first, before the PIN: a refusal spends no try. The message's service
    # checks again under the chat's lock (in a group: both memberships and blocks). A direct
    # transfer only reaches friends or a receiver who accepts strangers; in a group anyone may
    # pay a member, but only those two may auto-accept (``accepts_sender``).
    may_auto_accept = True
    if conversation_id is None:
        chat_selectors.direct_message_check(sender_id=sender_id, peer_id=receiver_id)
    else:
        may_auto_accept = chat_selectors.payment_receiver_check(
            sender_id=sender_id, receiver_id=receiver_id, conversation_id=conversation_id
        ).accepts_sender
    payer = _payer_lock(sender_id)
    if payer is None:
        raise Forbidden(_("Set a payment PIN first."), code="pin_not_set")
    failure, pin_changes = _pin_outcome(payer, pin)
    if pin_changes:
        WalletSettings.objects.filter(pk=sender_id).update(**pin_changes)
    if failure is not None:
        if pin_changes:
            return failure  # commit the counted try (or the lock), then raise
        raise failure
    if pin_changes and pin_state_first:
        return None
    auto_accept, spent, sender_wallet, receiver_wallet, escrow, transfer_id = _transfer_reads(
        sender_id=sender_id, receiver_id=receiver_id, currency=currency, may_auto_accept=may_auto_accept
    )
    _check_limits(payer=payer, amount=amount, currency=currency, spent=spent)
    now = timezone.now()
    # Auto-accepted: one entry, wallet to wallet (received at once, as WeChat shows it). Else the
    # money waits in the sender's escrow until accepted, returned or expired.
    target_account = receiver_wallet if auto_accept else escrow
    fields = {
        "sender_id": sender_id,
        "receiver_id": receiver_id,
        "amount": amount,
        "currency": currency,
        "note": note,
        "status": Transfer.Status.ACCEPTED if auto_accept else Transfer.Status.PENDING,
        "created_at": now,
        "expires_at": now + settings.PAYMENTS_TRANSFER_TTL,
        "resolved_at": now if auto_accept else None,
    }
    if transfer_id is not None:  # PostgreSQL: the row and the entry in one statement
        ledger_post_rows(
            kind=JournalEntry.Kind.TRANSFER_SEND,
            reference=f"transfer:{transfer_id}:send",
            memo=note,
            legs=[(sender_wallet, -amount, currency), (target_account, amount, currency)],
            now=now,
            extra_sql=_TRANSFER_INSERT_CTE,
            extra_params={
                "t_id": transfer_id,
                "t_sender": sender_id,
                "t_receiver": receiver_id,
                "t_amount": amount,
                "t_currency": currency,
                "t_note": note,
                "t_status": str(fields["status"]),
                "t_now": now,
                "t_expires": fields["expires_at"],
                "t_resolved": fields["resolved_at"],
            },
        )
        transfer = Transfer(id=transfer_id, **fields)
        transfer._state.adding, transfer._state.db = False, connection.alias
    else:
        transfer = Transfer.objects.create(**fields)
        ledger_post(
            kind=JournalEntry.Kind.TRANSFER_SEND,
            reference=f"transfer:{transfer.id}:send",
            legs=[
                Leg(LedgerAccount(id=sender_wallet, currency=currency), -amount),
                Leg(LedgerAccount(id=target_account, currency=currency), amount),
            ],
            memo=note,
        )
    payload = events.transfer_payload(transfer)
    # ``created`` shows the transfer as it was sent (pending), ``accepted`` as it is now: the
    # same two events as a transfer accepted by hand.
    specs = [
        core_events.EventSpec(
            user_ids=[sender_id, receiver_id],
            type=events.TRANSFER_CREATED,
            data={**payload, "status": Transfer.Status.PENDING.value, "resolved_at": None},
        )
    ]
    if auto_accept:
        specs.append(
            core_events.EventSpec(
                user_ids=[sender_id, receiver_id], type=events.TRANSFER_ACCEPTED, data=payload
            )
        )
    # After the ledger: locks the chat (the pair's, or the group given), stores the bubble (every
    # member gets it; it names the receiver), publishes everything at once.
    chat_services.payment_message_post(
        sender_id=sender_id,
        kind="transfer",
        object_id=transfer.id,
        body=events.transfer_bubble(transfer),
        conversation_id=conversation_id,
        to_user_id=receiver_id if conversation_id is None else None,
        receiver_id=receiver_id,
        also_publish=specs,
    )
    return transfer


def _settle(
    transfer: Transfer, *, to_receiver: bool, escrow: LedgerAccount | None = None, now: datetime
) -> None:
    """Move a pending transfer out of escrow. Caller holds the transfer (or just created it)."""
    escrow = escrow or account_for(
        kind=AccountKind.TRANSFER_ESCROW, owner_id=transfer.sender_id, currency=transfer.currency
    )
    target = transfer.receiver_id if to_receiver else transfer.sender_id
    wallet = wallet_for(user_id=target, currency=transfer.currency)
    ledger_post(
        kind=JournalEntry.Kind.TRANSFER_ACCEPT if to_receiver else JournalEntry.Kind.TRANSFER_REFUND,
        reference=f"transfer:{transfer.id}:{'accept' if to_receiver else 'refund'}",
        legs=[Leg(escrow, -transfer.amount), Leg(wallet, transfer.amount)],
    )
    transfer.status = Transfer.Status.ACCEPTED if to_receiver else Transfer.Status.REFUNDED
    transfer.resolved_at = now
    transfer.save(update_fields=["status", "resolved_at"])


def _transfer_resolved(transfer: Transfer, *, event_type: str, notice: str, actor_id: int | None) -> None:
    """Show a settled transfer in its chat (the bubble's status, a system line) and publish the
    payments event with it. Caller holds the transfer's row and its ledger accounts."""
    chat_services.payment_message_update(
        sender_id=transfer.sender_id,
        kind="transfer",
        object_id=transfer.id,
        changes={"status": transfer.status},
        notice=notice,
        actor_id=actor_id,
        also_publish=[
            core_events.EventSpec(
                user_ids=[transfer.sender_id, transfer.receiver_id],
                type=event_type,
                data=events.transfer_payload(transfer),
            )
        ],
    )


def _locked_transfer(transfer_id: int, user_id: int) -> Transfer:
    transfer = Transfer.objects.select_for_update().filter(pk=transfer_id).first()
    if transfer is None or user_id not in (transfer.sender_id, transfer.receiver_id):
        raise NotFound()
    if transfer.receiver_id != user_id:
        raise Forbidden(_("Only the receiver can do this."), code="not_receiver")
    if transfer.status != Transfer.Status.PENDING:
        raise Conflict(
            _("This transfer was already %(status)s.") % {"status": transfer.status},
            code="transfer_not_pending",
        )
    return transfer


@money_atomic
def transfer_accept(*, user_id: int, transfer_id: int) -> Transfer:
    """The receiver takes the money. After expiry the refund wins (``transfer_expired``)."""
    transfer = _locked_transfer(transfer_id, user_id)
    now = timezone.now()
    if transfer.expires_at <= now:
        raise Conflict(_("This transfer has expired and goes back to the sender."), code="transfer_expired")
    _settle(transfer, to_receiver=True, now=now)
    _transfer_resolved(
        transfer, event_type=events.TRANSFER_ACCEPTED, notice="transfer.accepted", actor_id=user_id
    )
    return transfer


@money_atomic
def transfer_return(*, user_id: int, transfer_id: int) -> Transfer:
    """The receiver declines: the money goes back to the sender at once."""
    transfer = _locked_transfer(transfer_id, user_id)
    _settle(transfer, to_receiver=False, now=timezone.now())
    _transfer_resolved(
        transfer, event_type=events.TRANSFER_REFUNDED, notice="transfer.returned", actor_id=user_id
    )
    return transfer


@money_atomic
def transfer_refund_if_expired(*, transfer_id: int) -> bool:
    """Refund one expired pending transfer; ``False`` when there is nothing to do (safe twice)."""
    transfer = Transfer.objects.select_for_update().filter(pk=transfer_id).first()
    now = timezone.now()
    if transfer is None or transfer.status != Transfer.Status.PENDING or transfer.expires_at > now:
        return False
    _settle(transfer, to_receiver=False, now=now)
    _transfer_resolved(
        transfer, event_type=events.TRANSFER_REFUNDED, notice="transfer.expired", actor_id=None
    )
    return True


def transfers_refund_expired(*, batch: int = 500) -> int:
    """Refund every expired pending transfer, each in its own transaction; returns how many."""
    ids = list(
        Transfer.objects.filter(status=Transfer.Status.PENDING, expires_at__lte=timezone.now())
        .order_by("expires_at")
        .values_list("id", flat=True)[:batch]
    )
    return sum(transfer_refund_if_expired(transfer_id=i) for i in ids)


# --- withdrawals ------------------------------------------------------------------------------


def withdrawal_create(
    *, user_id: int, amount: int, destination: str, pin: str, currency: str | None = None
) -> Withdrawal:
    """Withdraw to a bank account: the amount is held at once, the payout is created by a
    Celery task after commit, and the hold is paid out or returned when the provider answers."""
    currency = currency or settings.PAYMENTS_DEFAULT_CURRENCY
    _check_amount(amount, currency)
    if not destination or len(destination) > 255:
        raise ValidationFailed(fields={"bank_account_id": [_("Give the bank account.")]})
    pin_verify(user_id=user_id, pin=pin)
    return _withdrawal_hold(user_id=user_id, amount=amount, destination=destination, currency=currency)


@money_atomic
def _withdrawal_hold(*, user_id: int, amount: int, destination: str, currency: str) -> Withdrawal:
    payer = _lock_settings(user_id)
    _check_limits(payer=payer, amount=amount, currency=currency)
    withdrawal = Withdrawal.objects.create(
        user_id=user_id,
        amount=amount,
        currency=currency,
        destination=destination,
        provider=get_provider().name,
    )
    ledger_post(
        kind=JournalEntry.Kind.WITHDRAWAL_HOLD,
        reference=f"withdrawal:{withdrawal.id}:hold",
        legs=[
            Leg(wallet_for(user_id=user_id, currency=currency), -amount),
            Leg(account_for(kind=AccountKind.WITHDRAWAL_HOLD, owner_id=user_id, currency=currency), amount),
        ],
    )
    from .tasks import submit_withdrawal  # the tasks module imports this one

    transaction.on_commit(lambda: submit_withdrawal.delay(withdrawal.id))
    core_events.publish(
        user_ids=[user_id], type=events.WITHDRAWAL_UPDATED, data=events.withdrawal_payload(withdrawal)
    )
    return withdrawal


def withdrawal_submit(*, withdrawal_id: int) -> None:
    """Create the payout of a held withdrawal (the Celery task's body; safe to run twice: the
    provider call carries an idempotency key derived from the withdrawal).

    Raises:
        ProviderUnavailable: the provider could not be reached; the task retries.
    """
    withdrawal = Withdrawal.objects.filter(pk=withdrawal_id, status=Withdrawal.Status.PENDING).first()
    if withdrawal is None:
        return
    provider = import_string(PROVIDERS[withdrawal.provider])()
    try:
        result = provider.payout_create(
            withdrawal_id=withdrawal.id,
            amount=withdrawal.amount,
            currency=withdrawal.currency,
            destination=withdrawal.destination,
        )
    except ProviderUnavailable:
        raise
    except ProviderError as exc:
        withdrawal_resolve(withdrawal_id=withdrawal.id, paid=False, reason=exc.message)
        return
    Withdrawal.objects.filter(pk=withdrawal.id, status=Withdrawal.Status.PENDING).update(
        status=Withdrawal.Status.PROCESSING, provider_ref=result.provider_ref
    )
    if result.paid:
        withdrawal_resolve(withdrawal_id=withdrawal.id, paid=True)


def withdrawals_resubmit_stale(*, older_than_minutes: int = 10) -> int:
    """Submit again withdrawals still pending (a lost task); the idempotency key makes it safe."""
    cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
    ids = list(
        Withdrawal.objects.filter(status=Withdrawal.Status.PENDING, created_at__lt=cutoff).values_list(
            "id", flat=True
        )[:200]
    )
    for withdrawal_id in ids:
        withdrawal_submit(withdrawal_id=withdrawal_id)
    return len(ids)


@money_atomic
def withdrawal_resolve(*, withdrawal_id: int, paid: bool, reason: str = "") -> bool:
    """Pay out (hold -> provider clearing) or return (hold -> wallet) a withdrawal; once."""
    withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal_id)
    return _withdrawal_finish(withdrawal, paid=paid, reason=reason)


def _withdrawal_finish(withdrawal: Withdrawal, *, paid: bool, reason: str) -> bool:
    """Caller holds the withdrawal's row lock in a money transaction. ``failed`` is final, and so
    is ``paid`` but for one case: a bank may return a payout days after it was paid (Stripe then
    sends ``payout.failed`` for a paid payout), and the money comes back to the wallet from the
    provider's clearing account. A replayed or late ``payout.paid`` changes nothing."""
    if withdrawal.status == Withdrawal.Status.FAILED or (
        withdrawal.status == Withdrawal.Status.PAID and paid
    ):
        return False
    wallet = wallet_for(user_id=withdrawal.user_id, currency=withdrawal.currency)
    clearing = account_for(kind=AccountKind.PROVIDER_CLEARING, currency=withdrawal.currency)
    if withdrawal.status == Withdrawal.Status.PAID:  # returned by the bank after it was paid
        source, target = clearing, wallet
    else:
        source = account_for(
            kind=AccountKind.WITHDRAWAL_HOLD, owner_id=withdrawal.user_id, currency=withdrawal.currency
        )
        target = clearing if paid else wallet
    ledger_post(
        kind=JournalEntry.Kind.WITHDRAWAL_PAID if paid else JournalEntry.Kind.WITHDRAWAL_RETURN,
        reference=f"withdrawal:{withdrawal.id}:{'paid' if paid else 'return'}",
        legs=[Leg(source, -withdrawal.amount), Leg(target, withdrawal.amount)],
    )
    withdrawal.status = Withdrawal.Status.PAID if paid else Withdrawal.Status.FAILED
    withdrawal.failure_reason = "" if paid else reason[:200]
    withdrawal.resolved_at = timezone.now()
    withdrawal.save(update_fields=["status", "failure_reason", "resolved_at"])
    core_events.publish(
        user_ids=[withdrawal.user_id],
        type=events.WITHDRAWAL_UPDATED,
        data=events.withdrawal_payload(withdrawal),
    )
    return True
