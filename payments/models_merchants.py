"""Payments II tables: merchants, their API keys, orders, refunds, payment codes, settlement
batches and disputes (docs/payments.md, "Payments II").

Imported at the end of ``payments.models`` so that Django sees them as models of the payments app.
Money still moves only through the ledger (``payments.ledger.ledger_post``); these rows are the
business side of each movement, and their CHECK constraints are the backstop of the rules the
services enforce (never refund more than was paid, never more fee back than was charged).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Merchant(models.Model):
    """A business that takes payments. Owned by a user; an official account or a mini-program
    takes payments through a merchant too (``kind`` + ``external_ref`` name it), as WeChat binds
    app ids to a merchant id.

    Its money lives in two ledger accounts (``LedgerAccount.merchant``): ``merchant`` (paid, not
    settled yet) and ``merchant_available`` (settled: withdrawable).
    """

    class Kind(models.TextChoices):
        BUSINESS = "business"
        OFFICIAL_ACCOUNT = "official_account"
        MINI_PROGRAM = "mini_program"

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"  # staff: takes no new orders or payments; refunds still work

    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.BUSINESS)
    external_ref = models.CharField(
        max_length=64, blank=True, help_text="The official account or mini-program paid through it."
    )
    name = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    fee_rate_bps = models.PositiveIntegerField(help_text="Fee in basis points (60 = 0.6 %).")
    notify_url = models.CharField(max_length=500, blank=True)
    # Signs our notifications to ``notify_url`` (``X-Superapp-Signature``). Separate from the API
    # secrets, which are kept encrypted: queued notifications store the secret that signs them.
    notify_secret = models.CharField(max_length=64)
    # What the static QR code carries (the payer enters the amount).
    static_code = models.CharField(max_length=43, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(fee_rate_bps__lte=10_000), name="merchant_fee_rate_at_most_100_percent"
            ),
            models.UniqueConstraint(
                fields=["kind", "external_ref"],
                condition=~Q(external_ref=""),
                name="merchant_external_unique",
            ),
        ]
        indexes = [models.Index(fields=["owner", "id"])]

    def __str__(self) -> str:
        return f"merchant {self.id} {self.name}"


class MerchantKey(models.Model):
    """An API key of a merchant. The secret is needed in the clear to check HMAC signatures, so
    it is stored encrypted (Fernet, ``PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS``), never hashed.
    After a rotation the old key keeps working until ``expires_at``."""

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="keys")
    key_id = models.CharField(max_length=40, unique=True)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key_id} of merchant {self.merchant_id}"


class MerchantOrder(models.Model):
    """One payment to a merchant: created by the merchant (dynamic QR, payment code) or by the
    payer (static QR). ``out_trade_no`` is the merchant's own number (unique per merchant)."""

    class TradeType(models.TextChoices):
        NATIVE = "native"  # dynamic QR: the merchant sets the amount; the payer scans and pays
        STATIC_QR = "static_qr"  # the payer scans the merchant's fixed QR and enters the amount
        MICROPAY = "micropay"  # the merchant scans the payer's payment code

    class Status(models.TextChoices):
        CREATED = "created"  # not paid (WeChat NOTPAY)
        USER_PAYING = "user_paying"  # payment code over the no-PIN limit: waiting for the PIN
        PAID = "paid"  # (refunds may have returned part of it: ``refunded_amount``)
        REFUNDED = "refunded"  # paid, then refunded in full
        CLOSED = "closed"  # closed by the merchant or expired unpaid

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="orders")
    out_trade_no = models.CharField(max_length=64)
    trade_type = models.CharField(max_length=16, choices=TradeType.choices)
    description = models.CharField(max_length=127)
    attach = models.CharField(max_length=127, blank=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    # What the payer's app fetches the order by (the dynamic QR carries it).
    code = models.CharField(max_length=43, unique=True)
    notify_url = models.CharField(max_length=500, blank=True)
    # Fingerprint of the creating parameters: the same out_trade_no with others is a conflict.
    request_hash = models.CharField(max_length=64)
    payer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    fee_rate_bps = models.PositiveIntegerField()
    fee = models.BigIntegerField(default=0)
    refunded_amount = models.BigIntegerField(default=0)
    fee_refunded = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    expire_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The business day (PAYMENTS_SETTLEMENT_TIMEZONE) whose settlement batch nets this payment.
    settlement_date = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "out_trade_no"], name="merchant_order_out_trade_no"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="merchant_order_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=F("amount")),
                name="merchant_order_refund_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(fee__gte=0) & Q(fee__lte=F("amount")), name="merchant_order_fee_within_amount"
            ),
            models.CheckConstraint(
                condition=Q(fee_refunded__gte=0) & Q(fee_refunded__lte=F("fee")),
                name="merchant_order_fee_refund_within_fee",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["paid", "refunded"], paid_at__isnull=False, settlement_date__isnull=False
                )
                | (~Q(status__in=["paid", "refunded"]) & Q(refunded_amount=0)),
                name="merchant_order_paid_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["merchant", "settlement_date"]),
            models.Index(fields=["merchant", "-id"]),
            models.Index(fields=["payer", "paid_at"]),
            models.Index(fields=["status", "expire_at"]),
        ]

    def __str__(self) -> str:
        return f"order {self.id} {self.out_trade_no} {self.amount} ({self.status})"


class MerchantRefund(models.Model):
    """Money of a paid order going back to the payer's wallet (several partial refunds allowed).

    ``source`` says which merchant balance paid it: ``pending`` while the order's day is not
    settled (then the day's batch nets it), ``available`` afterwards."""

    class Source(models.TextChoices):
        PENDING = "pending"
        AVAILABLE = "available"

    class Initiator(models.TextChoices):
        MERCHANT = "merchant"
        STAFF = "staff"
        DISPUTE = "dispute"

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="refunds")
    order = models.ForeignKey(MerchantOrder, on_delete=models.PROTECT, related_name="refunds")
    out_refund_no = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    fee_refund = models.BigIntegerField()
    reason = models.CharField(max_length=80, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    initiated_by = models.CharField(max_length=16, choices=Initiator.choices)
    request_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "out_refund_no"], name="merchant_refund_out_refund_no"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="merchant_refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(fee_refund__gte=0) & Q(fee_refund__lte=F("amount")),
                name="merchant_refund_fee_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.id} {self.out_refund_no} {self.amount} of order {self.order_id}"


class PaymentCode(models.Model):
    """A one-time payment code (18 digits, shown as a barcode and a QR code) that a merchant scans.
    Only its keyed digest is stored: the code is a bearer credential for about a minute."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    order = models.ForeignKey(
        MerchantOrder, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"])]

    def __str__(self) -> str:
        return f"payment code {self.id} of {self.user_id}"


class SettlementBatch(models.Model):
    """One merchant's business day settled (T+1): its payments net of fees and of the refunds
    paid from the unsettled balance moved to the withdrawable balance by one journal entry."""

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="settlements")
    currency = models.CharField(max_length=3)
    date = models.DateField()
    order_count = models.IntegerField()
    refund_count = models.IntegerField()
    gross = models.BigIntegerField()
    fees = models.BigIntegerField()
    refunds = models.BigIntegerField()
    fee_refunds = models.BigIntegerField()
    net = models.BigIntegerField()
    # None when the net is 0 (a posting is never 0): nothing to move.
    entry = models.OneToOneField(
        "payments.JournalEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "settlement batches"
        constraints = [
            models.UniqueConstraint(fields=["merchant", "currency", "date"], name="settlement_batch_once"),
            models.CheckConstraint(
                condition=Q(net=F("gross") - F("fees") - F("refunds") + F("fee_refunds")),
                name="settlement_batch_net",
            ),
            models.CheckConstraint(condition=Q(net__gte=0), name="settlement_batch_net_non_negative"),
        ]

    def __str__(self) -> str:
        return f"settlement {self.date} of merchant {self.merchant_id}: {self.net} {self.currency}"


class MerchantPayout(models.Model):
    """Settled (withdrawable) merchant money paid out to the owner's wallet, from where the
    owner can spend it or withdraw it to a bank like any wallet money."""

    id = models.BigAutoField(primary_key=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payouts")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    entry = models.OneToOneField(
        "payments.JournalEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="merchant_payout_amount_positive")
        ]

    def __str__(self) -> str:
        return f"payout {self.id} of merchant {self.merchant_id}: {self.amount} {self.currency}"


class Dispute(models.Model):
    """A payer's complaint about an order, opened and resolved by staff. Resolving it in the
    customer's favour refunds the disputed amount through the ordinary refund service."""

    class Reason(models.TextChoices):
        NOT_RECEIVED = "not_received"
        NOT_AS_DESCRIBED = "not_as_described"
        UNAUTHORIZED = "unauthorized"
        DUPLICATE = "duplicate"
        OTHER = "other"

    class Status(models.TextChoices):
        OPEN = "open"
        # Decided for the customer, the refund under way (committed before it, so a concurrent
        # "for the merchant" is refused; a crash here is finished by resolving it again).
        RESOLVING_CUSTOMER = "resolving_customer"
        WON_BY_CUSTOMER = "won_by_customer"  # refunded
        WON_BY_MERCHANT = "won_by_merchant"  # nothing moved

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(MerchantOrder, on_delete=models.PROTECT, related_name="disputes")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    details = models.TextField(blank=True)
    amount = models.BigIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    resolution_note = models.CharField(max_length=200, blank=True)
    refund = models.OneToOneField(
        MerchantRefund, on_delete=models.PROTECT, null=True, blank=True, related_name="dispute"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            # At most one open (or being resolved) dispute per order.
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["open", "resolving_customer"]),
                name="dispute_one_open",
            ),
        ]

    def __str__(self) -> str:
        return f"dispute {self.id} on order {self.order_id} ({self.status})"
