"""Payments tables: a double-entry ledger, wallet settings, transfers, red packets, top-ups.

Money is an integer number of minor units (fen for CNY) plus an ISO 4217 currency; never a float.
Every movement is one immutable :class:`JournalEntry` with two or more :class:`Posting` rows
that sum to zero per currency (checked by a deferred PostgreSQL constraint trigger, see
migration 0002). Balances live on :class:`LedgerAccount` rows and change in the same transaction
as the postings (``payments.ledger.ledger_post``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class AccountKind(models.TextChoices):
    WALLET = "wallet", "user wallet"
    PLATFORM_CLEARING = "platform_clearing", "platform clearing"
    PROVIDER_CLEARING = "provider_clearing", "card provider clearing"
    FEES = "fees", "fees"
    TRANSFER_ESCROW = "transfer_escrow", "transfer escrow"
    RED_PACKET_ESCROW = "red_packet_escrow", "red packet escrow"
    WITHDRAWAL_HOLD = "withdrawal_hold", "withdrawals on their way to banks"
    MERCHANT = "merchant", "merchant, not settled yet"
    MERCHANT_AVAILABLE = "merchant_available", "merchant, settled (withdrawable)"


# Accounts that hold real users' money (or money promised to them) may never go below zero. The
# clearing accounts mirror money outside the ledger (a card network) and are negative by design.
NON_NEGATIVE_KINDS = (
    AccountKind.WALLET,
    AccountKind.TRANSFER_ESCROW,
    AccountKind.RED_PACKET_ESCROW,
    AccountKind.WITHDRAWAL_HOLD,
    AccountKind.MERCHANT,
    AccountKind.MERCHANT_AVAILABLE,
)
USER_KINDS = (AccountKind.WALLET,)
# A merchant's accounts belong to the merchant (``LedgerAccount.merchant``), not to a user.
MERCHANT_KINDS = (AccountKind.MERCHANT, AccountKind.MERCHANT_AVAILABLE)


class LedgerAccount(models.Model):
    """One account of the ledger: a user's wallet or a system account, in one currency."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32, choices=AccountKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    merchant = models.ForeignKey(
        "payments.Merchant", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    currency = models.CharField(max_length=3)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0) | ~Q(kind__in=NON_NEGATIVE_KINDS),
                name="ledger_account_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(owner__isnull=False) | ~Q(kind__in=USER_KINDS),
                name="ledger_account_user_kind_has_owner",
            ),
            # One account per (kind, owner, currency); system accounts (no owner) one per (kind,
            # currency). Two partial indexes rather than NULLS NOT DISTINCT, which SQLite lacks.
            models.UniqueConstraint(
                fields=["kind", "owner", "currency"],
                condition=Q(owner__isnull=False),
                name="ledger_account_unique",
            ),
            models.UniqueConstraint(
                fields=["kind", "currency"],
                condition=Q(owner__isnull=True, merchant__isnull=True),
                name="ledger_system_account_unique",
            ),
            models.UniqueConstraint(
                fields=["kind", "merchant", "currency"],
                condition=Q(merchant__isnull=False),
                name="ledger_merchant_account_unique",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=MERCHANT_KINDS, merchant__isnull=False, owner__isnull=True)
                | (~Q(kind__in=MERCHANT_KINDS) & Q(merchant__isnull=True)),
                name="ledger_account_merchant_kind",
            ),
        ]

    def __str__(self) -> str:
        owner = f" of {self.owner_id}" if self.owner_id else ""
        if self.merchant_id:
            owner = f" of merchant {self.merchant_id}"
        return f"{self.kind}{owner} ({self.currency})"


class JournalEntry(models.Model):
    """One movement of money. Immutable: a mistake is corrected by another entry."""

    class Kind(models.TextChoices):
        TOP_UP = "top_up"
        TRANSFER_SEND = "transfer_send"
        TRANSFER_ACCEPT = "transfer_accept"
        TRANSFER_REFUND = "transfer_refund"
        RED_PACKET_SEND = "red_packet_send"
        RED_PACKET_GRAB = "red_packet_grab"
        RED_PACKET_REFUND = "red_packet_refund"
        WITHDRAWAL_HOLD = "withdrawal_hold"
        WITHDRAWAL_PAID = "withdrawal_paid"
        WITHDRAWAL_RETURN = "withdrawal_return"
        MERCHANT_PAYMENT = "merchant_payment"
        MERCHANT_REFUND = "merchant_refund"
        MERCHANT_SETTLEMENT = "merchant_settlement"
        MERCHANT_PAYOUT = "merchant_payout"
        ADJUSTMENT = "adjustment"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # What caused it ("transfer:12"); unique so that one business event is booked at most once.
    reference = models.CharField(max_length=100, unique=True)
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "journal entries"

    def __str__(self) -> str:
        return f"#{self.id} {self.kind} {self.reference}"


class Posting(models.Model):
    """One leg of an entry: ``amount`` (signed, minor units) added to one account."""

    id = models.BigAutoField(primary_key=True)
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    # No index of its own: (account, -id) below leads with it.
    account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="posting_amount_non_zero")]
        indexes = [models.Index(fields=["account", "-id"])]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.currency} on {self.account_id}"


class ReconciliationRun(models.Model):
    """The outcome of one reconciliation (kept so the admin can show the latest mismatches)."""

    id = models.BigAutoField(primary_key=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ok = models.BooleanField()
    accounts_checked = models.IntegerField()
    entries_checked = models.IntegerField()
    mismatches = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'MISMATCH'}"


class WalletSettings(models.Model):
    """Per-user payment settings: PIN, verification level, transfer preferences."""

    class Level(models.TextChoices):
        UNVERIFIED = "unverified"
        VERIFIED = "verified"  # real-name verified

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    pin_hash = models.CharField(max_length=128, blank=True)
    pin_failed_attempts = models.PositiveSmallIntegerField(default=0)
    pin_locked_until = models.DateTimeField(null=True, blank=True)
    verification_level = models.CharField(max_length=16, choices=Level.choices, default=Level.UNVERIFIED)
    auto_accept_transfers = models.BooleanField(default=False)
    provider_customer_id = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"wallet settings of {self.user_id}"


class TopUp(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=16)
    provider_ref = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive")]

    def __str__(self) -> str:
        return f"top-up {self.id} {self.amount} {self.currency}"


class Transfer(models.Model):
    """Money sent to a friend, held in escrow until accepted or refunded."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REFUNDED = "refunded"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: (sender, ...) below leads with it.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    receiver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    note = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive")]
        # The second index serves the daily-limit sum of one sender.
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["sender", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"transfer {self.id} {self.sender_id}->{self.receiver_id} {self.amount}"


class RedPacket(models.Model):
    """Money split among an audience (a chat's members): normal (equal) or lucky (random) shares."""

    class Kind(models.TextChoices):
        NORMAL = "normal"
        LUCKY = "lucky"

    class Status(models.TextChoices):
        ACTIVE = "active"
        FINISHED = "finished"  # every share grabbed
        REFUNDED = "refunded"  # expired; the remainder went back to the sender

    id = models.BigAutoField(primary_key=True)
    # No index of its own: (sender, ...) below leads with it.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    currency = models.CharField(max_length=3)
    total_amount = models.BigIntegerField()
    count = models.PositiveSmallIntegerField()
    remaining_amount = models.BigIntegerField()
    remaining_count = models.PositiveSmallIntegerField()
    greeting = models.CharField(max_length=100, blank=True)
    # The chat it was sent in (messaging's conversation id; no foreign key across apps). Who may
    # grab is decided by that chat when grabbing: its members who can see the packet's message.
    conversation_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(count__gte=1), name="red_packet_count_positive"),
            models.CheckConstraint(
                condition=Q(total_amount__gte=F("count")), name="red_packet_at_least_one_fen_each"
            ),
            models.CheckConstraint(
                condition=Q(remaining_amount__gte=F("remaining_count")) & Q(remaining_count__lte=F("count")),
                name="red_packet_remaining_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["sender", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"red packet {self.id} ({self.kind}) {self.total_amount}/{self.count}"


class RedPacketShare(models.Model):
    """One share of a red packet that nobody has grabbed yet, its amount drawn when the packet
    was sent (WeChat splits a packet when it is sent, not when it is opened).

    A grab deletes one (the lowest id it can lock: ``FOR UPDATE SKIP LOCKED``, so grabbers never
    wait for each other here) and records it as a :class:`RedPacketGrab`; the expiry refund
    deletes the rest. So a packet's rows are exactly its unclaimed shares: once no grab is in
    flight, their count and sum are the packet's ``remaining_count`` and ``remaining_amount``.
    """

    id = models.BigAutoField(primary_key=True)
    # Indexed by (packet, id) below: a grab takes the lowest unclaimed id of its packet.
    packet = models.ForeignKey(RedPacket, on_delete=models.PROTECT, related_name="shares", db_index=False)
    amount = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="red_packet_share_positive")]
        indexes = [models.Index(fields=["packet", "id"], name="red_packet_share_next")]

    def __str__(self) -> str:
        return f"unclaimed share of {self.amount} in {self.packet_id}"


class RedPacketGrab(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (packet, user) leads with it.
    packet = models.ForeignKey(RedPacket, on_delete=models.PROTECT, related_name="grabs", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["packet", "user"], name="red_packet_grab_once"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="red_packet_grab_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} grabbed {self.amount} from {self.packet_id}"


class Card(models.Model):
    """A card linked to the user's customer at the provider (only the provider's reference and
    display details are kept; never a card number)."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=16)
    provider_ref = models.CharField(max_length=255)
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_ref"], name="card_provider_ref_unique")
        ]

    def __str__(self) -> str:
        return f"{self.brand} ****{self.last4} of {self.user_id}"


class ProviderEvent(models.Model):
    """A webhook event already handled: its id is unique, inserted in the same transaction as
    its effect, so a replayed or concurrent delivery does nothing."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    outcome = models.CharField(max_length=32)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="provider_event_unique")]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id}"


class Withdrawal(models.Model):
    """Money on its way from a wallet to a bank account: held until the payout is paid."""

    class Status(models.TextChoices):
        PENDING = "pending"  # held; the payout is being created
        PROCESSING = "processing"  # the provider accepted the payout
        PAID = "paid"
        FAILED = "failed"  # the hold went back to the wallet

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    destination = models.CharField(max_length=255, help_text="The provider's bank account id.")
    provider = models.CharField(max_length=16)
    provider_ref = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="withdrawal_amount_positive")]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"withdrawal {self.id} {self.amount} {self.currency} ({self.status})"


# Payments II (merchants, orders, refunds, settlement): their own module, seen by Django from here.
from .models_merchants import (  # noqa: E402, F401
    Dispute,
    Merchant,
    MerchantKey,
    MerchantOrder,
    MerchantPayout,
    MerchantRefund,
    PaymentCode,
    SettlementBatch,
)

# Real-name verification (payments/verification.py): its own module, seen by Django from here.
from .models_verification import IdentityVerification, VerifiedIdentity  # noqa: E402, F401
