"""Input and output shapes of the payments API. Amounts are integers in minor units (fen)."""

from __future__ import annotations

from rest_framework import serializers

from superapp.core.serializers import BuilderSerializer

from .. import events
from ..models import JournalEntry, RedPacket, Transfer, Withdrawal

PIN_FIELD = {"min_length": 6, "max_length": 6, "help_text": "The 6-digit payment PIN."}


class LimitsSerializer(serializers.Serializer):
    per_payment = serializers.IntegerField()
    per_day = serializers.IntegerField()


class WalletSerializer(serializers.Serializer):
    currency = serializers.CharField()
    balance = serializers.IntegerField(help_text="Minor units (fen).")
    verification_level = serializers.CharField()
    limits = LimitsSerializer()
    pin_set = serializers.BooleanField()
    pin_locked_until = serializers.DateTimeField(allow_null=True)
    auto_accept_transfers = serializers.BooleanField()


class WalletSettingsUpdateSerializer(serializers.Serializer):
    auto_accept_transfers = serializers.BooleanField(required=False)


class WalletTransactionSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Posting id.")
    entry_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=JournalEntry.Kind.choices, source="entry.kind")
    amount = serializers.IntegerField(help_text="Signed: positive in, negative out.")
    currency = serializers.CharField()
    memo = serializers.CharField(source="entry.memo")
    created_at = serializers.DateTimeField(source="entry.created_at")


class PinSetSerializer(serializers.Serializer):
    pin = serializers.CharField(**PIN_FIELD)


class PinChangeSerializer(serializers.Serializer):
    old_pin = serializers.CharField(**PIN_FIELD)
    pin = serializers.CharField(**PIN_FIELD)


class PinResetSerializer(serializers.Serializer):
    password = serializers.CharField(help_text="The account password.")
    pin = serializers.CharField(**PIN_FIELD)


class TopUpCreateSerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, help_text="Minor units (fen).")
    card_id = serializers.IntegerField(required=False, help_text="A linked card (required with Stripe).")
    currency = serializers.CharField(required=False, min_length=3, max_length=3)


class TopUpSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.CharField()
    provider = serializers.CharField()


class TransferCreateSerializer(serializers.Serializer):
    receiver_id = serializers.IntegerField(
        help_text="Who gets it: a friend, or with conversation_id another active member of that group."
    )
    conversation_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=(
            "A group to send it in (shown there to every member, for receiver_id only); omit for the "
            "direct chat with receiver_id. A direct chat's id is the same as omitting it (receiver_id "
            "must be its peer). Not a member of it: 404."
        ),
    )
    amount = serializers.IntegerField(min_value=1, help_text="Minor units (fen).")
    currency = serializers.CharField(required=False, min_length=3, max_length=3)
    note = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    pin = serializers.CharField(**PIN_FIELD)


class TransferSerializer(BuilderSerializer):
    builder = staticmethod(events.transfer_payload)
    id = serializers.IntegerField()
    sender_id = serializers.IntegerField()
    receiver_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    note = serializers.CharField()
    status = serializers.ChoiceField(choices=Transfer.Status.choices)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class RedPacketCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RedPacket.Kind.choices)
    total_amount = serializers.IntegerField(min_value=1, help_text="Minor units (fen).")
    count = serializers.IntegerField(
        min_value=1, help_text="1 in a direct chat; at most the group's members."
    )
    conversation_id = serializers.IntegerField(
        required=False, min_value=1, help_text="The chat to send it in (give this or to_user_id)."
    )
    to_user_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Or: the direct chat with this user (created on first use)."
    )
    greeting = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    currency = serializers.CharField(required=False, min_length=3, max_length=3)
    pin = serializers.CharField(**PIN_FIELD)


class RedPacketGrabEntrySerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    grabbed_at = serializers.DateTimeField()
    best_luck = serializers.BooleanField()


class RedPacketSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sender_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField(allow_null=True)
    kind = serializers.ChoiceField(choices=RedPacket.Kind.choices)
    currency = serializers.CharField()
    total_amount = serializers.IntegerField()
    count = serializers.IntegerField()
    remaining_count = serializers.IntegerField()
    remaining_amount = serializers.IntegerField()
    greeting = serializers.CharField()
    status = serializers.ChoiceField(choices=RedPacket.Status.choices)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    grabs = RedPacketGrabEntrySerializer(many=True)


class RedPacketGrabSerializer(serializers.Serializer):
    packet_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField(allow_null=True)
    user_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    remaining_count = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RedPacket.Status.choices)


class CardSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    provider = serializers.CharField()
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField(allow_null=True)
    exp_year = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class CardLinkSerializer(serializers.Serializer):
    payment_method_id = serializers.CharField(max_length=255, help_text="From the confirmed SetupIntent.")


class CardSetupSerializer(serializers.Serializer):
    setup_intent_id = serializers.CharField(source="setup_ref")
    client_secret = serializers.CharField()


class WebhookAckSerializer(serializers.Serializer):
    received = serializers.BooleanField()
    outcome = serializers.CharField()


class WithdrawalCreateSerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, help_text="Minor units (fen).")
    bank_account_id = serializers.CharField(max_length=255, help_text="The provider's bank account id.")
    currency = serializers.CharField(required=False, min_length=3, max_length=3)
    pin = serializers.CharField(**PIN_FIELD)


class WithdrawalSerializer(BuilderSerializer):
    builder = staticmethod(events.withdrawal_payload)
    id = serializers.IntegerField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Withdrawal.Status.choices)
    failure_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
