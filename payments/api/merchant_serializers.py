"""Input and output shapes of Payments II (merchants, checkout, orders API). Amounts in fen."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from superapp.core.serializers import BuilderSerializer

from .. import events
from ..models import Merchant, MerchantOrder, MerchantRefund

PIN_FIELD = {"min_length": 6, "max_length": 6, "help_text": "The 6-digit payment PIN."}
# Far above any limit, far below PostgreSQL's bigint: bad input stops here, never in the database.
MAX_AMOUNT = 10**15
AMOUNT = {"min_value": 1, "max_value": MAX_AMOUNT}
OUT_NO_HELP = "The merchant's own number: 6 to 64 letters, digits or _-|*@."


# --- merchants (owner, JWT) ---------------------------------------------------------------------


class MerchantCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    notify_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(
        choices=Merchant.Kind.choices,
        required=False,
        default=Merchant.Kind.BUSINESS,
        help_text=(
            "Only `business` here: an official account's or a mini-program's merchant is opened by "
            "that app's own service, which checks who administers it."
        ),
    )
    external_ref = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Empty here (it names the official account or mini-program of such a merchant).",
    )

    def validate_kind(self, value: str) -> str:
        if value != Merchant.Kind.BUSINESS:
            raise serializers.ValidationError(
                _(
                    "Only a business merchant can be opened here: an official account's or a "
                    "mini-program's merchant is opened from that official account or mini-program."
                )
            )
        return value

    def validate_external_ref(self, value: str) -> str:
        if value:
            raise serializers.ValidationError(
                _("Only an official account's or a mini-program's merchant names one.")
            )
        return value


class MerchantUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False)
    notify_url = serializers.CharField(max_length=500, required=False, allow_blank=True)


class KeyRotateSerializer(serializers.Serializer):
    grace_hours = serializers.IntegerField(
        min_value=0,
        max_value=168,
        required=False,
        help_text="How long the current keys keep working (default 24).",
    )


class MerchantKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class BalancesSerializer(serializers.Serializer):
    pending = serializers.IntegerField(help_text="Paid to the merchant, not settled yet.")
    available = serializers.IntegerField(help_text="Settled: withdrawable.")


class MerchantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Merchant.Kind.choices)
    external_ref = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()
    fee_rate_bps = serializers.IntegerField(help_text="Basis points: 60 = 0.6 %.")
    notify_url = serializers.CharField()
    status = serializers.ChoiceField(choices=Merchant.Status.choices)
    static_qr_url = serializers.CharField(help_text="What the static QR code carries.")
    created_at = serializers.DateTimeField()


class MerchantDetailSerializer(MerchantSerializer):
    notify_secret = serializers.CharField(help_text="Verifies our notifications' X-Superapp-Signature.")
    balances = BalancesSerializer()
    keys = MerchantKeySerializer(many=True, help_text="Live API keys (secrets are shown only when issued).")


class IssuedKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    secret = serializers.CharField(help_text="Shown this once: store it now.")


class MerchantCreatedSerializer(MerchantDetailSerializer):
    api_key = IssuedKeySerializer()


class PayoutCreateSerializer(serializers.Serializer):
    amount = serializers.IntegerField(**AMOUNT, help_text="Minor units (fen).")
    pin = serializers.CharField(**PIN_FIELD)


class PayoutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    merchant_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    entry_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class SettlementSerializer(BuilderSerializer):
    builder = staticmethod(events.settlement_payload)
    id = serializers.IntegerField()
    merchant_id = serializers.IntegerField()
    date = serializers.DateField()
    currency = serializers.CharField()
    order_count = serializers.IntegerField()
    refund_count = serializers.IntegerField()
    gross = serializers.IntegerField()
    fees = serializers.IntegerField()
    refunds = serializers.IntegerField()
    fee_refunds = serializers.IntegerField()
    net = serializers.IntegerField()
    entry_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


# --- checkout (payer, JWT) ----------------------------------------------------------------------


class MerchantBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class CheckoutMerchantSerializer(MerchantBriefSerializer):
    currency = serializers.CharField()


class CheckoutOrderSerializer(BuilderSerializer):
    builder = staticmethod(events.checkout_order_payload)
    id = serializers.IntegerField()
    code = serializers.CharField()
    merchant = MerchantBriefSerializer()
    trade_type = serializers.ChoiceField(choices=MerchantOrder.TradeType.choices)
    description = serializers.CharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=MerchantOrder.Status.choices)
    refunded_amount = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    expire_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


class CheckoutPaySerializer(serializers.Serializer):
    pin = serializers.CharField(**PIN_FIELD)
    amount = serializers.IntegerField(
        **AMOUNT, required=False, help_text="The amount the app showed; refused if the order's differs."
    )


class StaticPaySerializer(serializers.Serializer):
    amount = serializers.IntegerField(**AMOUNT, help_text="Minor units (fen), typed by the payer.")
    pin = serializers.CharField(**PIN_FIELD)
    note = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class PaymentCodeSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="18 digits: show as a barcode and a QR code; single use.")
    qr_png_base64 = serializers.CharField(help_text="The code as a QR code (PNG, base64).")
    expires_at = serializers.DateTimeField()


# --- orders API (merchant's server, signed) -----------------------------------------------------


class OrderCreateSerializer(serializers.Serializer):
    out_trade_no = serializers.CharField(max_length=64, help_text=OUT_NO_HELP)
    amount = serializers.IntegerField(**AMOUNT, help_text="Minor units (fen).")
    currency = serializers.CharField(required=False, min_length=3, max_length=3)
    description = serializers.CharField(max_length=127)
    attach = serializers.CharField(
        max_length=127, required=False, allow_blank=True, default="", help_text="Returned as is."
    )
    notify_url = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="", help_text="Overrides the merchant's."
    )
    expire_seconds = serializers.IntegerField(
        required=False,
        min_value=60,
        max_value=7 * 24 * 3600,
        help_text="Seconds until the order expires (default 2 hours).",
    )


class MicropaySerializer(serializers.Serializer):
    out_trade_no = serializers.CharField(max_length=64, help_text=OUT_NO_HELP)
    amount = serializers.IntegerField(**AMOUNT, help_text="Minor units (fen).")
    currency = serializers.CharField(required=False, min_length=3, max_length=3)
    auth_code = serializers.CharField(
        max_length=32, help_text="The payer's payment code (18 digits) as scanned."
    )
    description = serializers.CharField(max_length=127)
    attach = serializers.CharField(max_length=127, required=False, allow_blank=True, default="")
    notify_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class RefundCreateSerializer(serializers.Serializer):
    out_refund_no = serializers.CharField(max_length=64, help_text=OUT_NO_HELP)
    order_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    out_trade_no = serializers.CharField(max_length=64, required=False)
    amount = serializers.IntegerField(**AMOUNT, help_text="Minor units (fen); at most what is left.")
    reason = serializers.CharField(max_length=80, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if ("order_id" in attrs) == ("out_trade_no" in attrs):
            raise serializers.ValidationError({"order_id": ["Give order_id or out_trade_no (one of them)."]})
        return attrs


class OrderSerializer(BuilderSerializer):
    builder = staticmethod(events.merchant_order_payload)
    id = serializers.IntegerField()
    out_trade_no = serializers.CharField()
    trade_type = serializers.ChoiceField(choices=MerchantOrder.TradeType.choices)
    status = serializers.ChoiceField(choices=MerchantOrder.Status.choices)
    description = serializers.CharField()
    attach = serializers.CharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    fee = serializers.IntegerField()
    refunded_amount = serializers.IntegerField()
    payer = serializers.CharField(
        allow_null=True, help_text="The payer as this merchant sees them (stable, opaque)."
    )
    code_url = serializers.CharField(help_text="Show it as a QR code for the payer to scan.")
    created_at = serializers.DateTimeField()
    expire_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    settlement_date = serializers.DateField(allow_null=True)


class RefundSerializer(BuilderSerializer):
    builder = staticmethod(events.merchant_refund_payload)
    id = serializers.IntegerField()
    out_refund_no = serializers.CharField()
    order_id = serializers.IntegerField()
    out_trade_no = serializers.CharField()
    status = serializers.CharField()
    amount = serializers.IntegerField()
    fee_refund = serializers.IntegerField()
    currency = serializers.CharField()
    reason = serializers.CharField()
    source = serializers.ChoiceField(choices=MerchantRefund.Source.choices)
    initiated_by = serializers.ChoiceField(choices=MerchantRefund.Initiator.choices)
    created_at = serializers.DateTimeField()
