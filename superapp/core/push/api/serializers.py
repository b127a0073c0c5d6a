"""Input and output shapes of the push device API."""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from ..models import PushDevice


class DeviceRegisterSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=PushDevice.Platform.choices)
    token = serializers.CharField(
        max_length=1024,
        trim_whitespace=True,
        help_text="The FCM registration token (android, web) or the APNs device token in hex (ios).",
    )
    app_id = serializers.CharField(
        max_length=200,
        required=False,
        default="",
        allow_blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9._:/\-]*$")],
        help_text="Android package name, iOS bundle id (used as the APNs topic) or web origin.",
    )
    locale = serializers.CharField(
        max_length=35,
        required=False,
        default="",
        allow_blank=True,
        validators=[RegexValidator(r"^([A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*)?$")],
        help_text="The app's language, BCP 47 (zh-Hans-CN).",
    )


class DeviceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    platform = serializers.ChoiceField(choices=PushDevice.Platform.choices)
    token_hint = serializers.CharField(help_text="The token's first and last characters (never in full).")
    app_id = serializers.CharField()
    locale = serializers.CharField()
    current = serializers.SerializerMethodField(
        help_text="Registered from the login session making this request."
    )
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(help_text="Last registered (apps register at every start).")
    disabled_at = serializers.DateTimeField(allow_null=True, help_text="Set when pushes stopped.")
    disabled_reason = serializers.CharField(
        help_text="unregistered, invalid_token, bad_device_token, token_not_for_topic, sender_id_mismatch, "
        "session_revoked, too_many_devices; empty while active."
    )

    def get_current(self, device: PushDevice) -> bool:
        session_id = self.context.get("current_session_id")
        return session_id is not None and device.session_id == session_id
