"""Payment codes ("quick pay", WeChat's 付款码): the payer's app shows a one-time 18-digit number
(as a barcode and a QR code); the merchant scans it and charges it through the orders API.

* A code is valid ``PAYMENTS_PAYMENT_CODE_TTL`` (60 s) and once; asking for a new one ends the
  previous ones (the app refreshes its code every minute, as WeChat's does).
* Only an HMAC of the code is stored (it is a bearer credential while it lives); 16 random digits
  after the prefix, so guessing a live code is hopeless (about 10^16 possibilities).
* Up to ``PAYMENTS_MICROPAY_NO_PIN_LIMIT`` the charge goes through at once; above it the order
  waits in ``user_paying`` until the payer confirms with the PIN (``payments.orders``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core.errors import ApplicationError, Forbidden

from .merchants import qr_png
from .models import MerchantOrder, PaymentCode, WalletSettings

CODE_RE = re.compile(r"1[0-5][0-9]{16}")


class PaymentCodeInvalid(ApplicationError):
    default_code = "payment_code_invalid"


def payment_code_digest(code: str) -> str:
    key = hashlib.sha256(b"superapp.payments.payment-code:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()


def _new_code() -> str:
    # WeChat's codes are 18 digits starting with 10-15; the prefix tells a scanner what it is.
    return f"{10 + secrets.randbelow(6)}{secrets.randbelow(10**16):016d}"


def payment_code_issue(*, user_id: int) -> tuple[str, PaymentCode]:
    """A fresh payment code for the user (the earlier unused ones stop working).

    Raises:
        Forbidden ``pin_not_set``: a code can lead to a PIN confirmation, so a PIN must exist.
    """
    row = WalletSettings.objects.filter(user_id=user_id).only("pin_hash").first()
    if row is None or not row.pin_hash:
        raise Forbidden(_("Set a payment PIN first."), code="pin_not_set")
    now = timezone.now()
    with transaction.atomic():
        PaymentCode.objects.filter(user_id=user_id, used_at__isnull=True, expires_at__gt=now).update(
            expires_at=now
        )
        for _attempt in range(5):
            code = _new_code()
            try:
                with transaction.atomic():
                    issued = PaymentCode.objects.create(
                        user_id=user_id,
                        digest=payment_code_digest(code),
                        expires_at=now + settings.PAYMENTS_PAYMENT_CODE_TTL,
                    )
                return code, issued
            except IntegrityError:  # the same digits as another code ever issued: draw again
                continue
    raise RuntimeError("could not draw a unique payment code")


def payment_code_qr_base64(code: str) -> str:
    return base64.b64encode(qr_png(code)).decode()


def payment_code_lock(
    *, code: str, merchant_id: int | None = None, out_trade_no: str | None = None
) -> PaymentCode:
    """The live code, locked (``SELECT ... FOR UPDATE``) for the caller's transaction, which
    marks it used. Caller runs in a money transaction.

    A code already used by the order ``(merchant_id, out_trade_no)`` is returned too (its
    ``used_at`` set): the same micropay request sent twice at once, the second having waited
    on this lock, is a replay of the first, not a reuse of the code.

    Raises:
        PaymentCodeInvalid: not a code (``payment_code_invalid``), ``payment_code_expired``,
            ``payment_code_used`` (409).
    """
    if not isinstance(code, str) or not CODE_RE.fullmatch(code):
        raise PaymentCodeInvalid(
            _("This is not a payment code."), fields={"auth_code": [_("18 digits starting with 10 to 15.")]}
        )
    row = PaymentCode.objects.select_for_update().filter(digest=payment_code_digest(code)).first()
    if row is None:
        raise PaymentCodeInvalid(_("Unknown payment code."))
    if row.used_at is not None:
        if (
            merchant_id is not None
            and row.order_id is not None
            and MerchantOrder.objects.filter(
                pk=row.order_id, merchant_id=merchant_id, out_trade_no=out_trade_no
            ).exists()
        ):
            return row
        raise PaymentCodeInvalid(
            _("This payment code was already used."), code="payment_code_used", status_code=409
        )
    if row.expires_at <= timezone.now():
        raise PaymentCodeInvalid(
            _("This payment code has expired; ask the customer to refresh it."), code="payment_code_expired"
        )
    return row


def payment_codes_purge(*, older_than_hours: int = 24) -> int:
    """Delete codes that expired long ago (used ones keep their order link until then)."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted, _detail = PaymentCode.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
