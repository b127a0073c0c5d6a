"""Real-name verification API (``/api/v1/payments/verification``): thin views over
``payments.verification``. A user sees and changes only their own verification."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import events, selectors, verification
from ..models import IdentityVerification, WalletSettings
from ..models_verification import VERIFICATION_STATES


class VerificationSerializer(serializers.Serializer):
    """``events.verification_payload``: the same shape as the ``payments.verification.updated`` event."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=IdentityVerification.Status.choices)
    provider = serializers.CharField()
    legal_name = serializers.CharField(help_text='Masked as WeChat shows it ("*明"); empty until verified.')
    id_type = serializers.CharField(help_text='"cn_resident_id", or "<country>_<document type>".')
    id_number_masked = serializers.CharField(
        help_text='A resident ID all masked but its check character ("*****************X"); '
        "empty for other documents (no digit of a number is kept)."
    )
    failure_code = serializers.CharField(
        help_text="Why it failed or ended: the provider's reason (document_expired...), "
        "identity_limit_reached, superseded, canceled_by_user, revoked..."
    )
    failure_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    verification_level = serializers.ChoiceField(choices=WalletSettings.Level.choices)


class VerificationStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=VERIFICATION_STATES,
        help_text="The latest attempt's status; none: never started.",
    )
    verification_level = serializers.ChoiceField(choices=WalletSettings.Level.choices)
    verification = VerificationSerializer(allow_null=True)


class VerificationStartedSerializer(VerificationStateSerializer):
    client_secret = serializers.CharField(
        help_text="Stripe: open the verification with Stripe.js / the mobile SDK (empty in the sandbox)."
    )
    url = serializers.CharField(help_text="Stripe: or send the user to this page (empty in the sandbox).")


class VerificationResumedSerializer(VerificationStateSerializer):
    client_secret = serializers.CharField(
        required=False,
        help_text="With ?resume=true: the pending Stripe verification's client secret again (empty "
        "when nothing waits for the user).",
    )
    url = serializers.CharField(required=False, help_text="With ?resume=true: its page again.")


class VerificationStartSerializer(serializers.Serializer):
    legal_name = serializers.CharField(
        required=False, allow_blank=True, max_length=100, default="", help_text="Sandbox only."
    )
    id_number = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=32,
        default="",
        help_text="Sandbox only: a mainland China resident ID number (18 characters).",
    )


def _state(user_id: int) -> dict:
    level = selectors.wallet_settings(user_id=user_id).verification_level
    latest = selectors.verification_latest(user_id=user_id)
    return {
        "status": latest.status if latest else "none",
        "verification_level": level,
        "verification": events.verification_payload(latest, level=level) if latest else None,
    }


class VerificationView(APIView):
    # Each start may cost money at the provider (Stripe bills every Identity session) and each
    # resume asks it: both are limited per user (THROTTLE_IDENTITY_VERIFICATION, 5 a day); reading
    # the state and giving up are not.
    throttle_scope = "identity_verification"

    def get_throttles(self):
        if self.request.method == "POST" or self.request.query_params.get("resume") in ("true", "1"):
            return super().get_throttles()
        return []

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "resume",
                OpenApiTypes.BOOL,
                description="Also give the pending Stripe verification's client_secret and url again "
                "(asks Stripe: for an app that lost the start's answer).",
            )
        ],
        responses=VerificationResumedSerializer,
        tags=["payments"],
        summary="My real-name verification: its state and the wallet's level",
    )
    def get(self, request: Request) -> Response:
        body = _state(request.user.pk)
        if request.query_params.get("resume") in ("true", "1"):
            body["client_secret"], body["url"] = verification.verification_resume(user_id=request.user.pk)
        return Response(VerificationResumedSerializer(body).data)

    @extend_schema(
        request=VerificationStartSerializer,
        responses={201: VerificationStartedSerializer},
        tags=["payments"],
        summary="Start a real-name verification (409 if verified or one is in progress)",
    )
    def post(self, request: Request) -> Response:
        data = VerificationStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _row, started = verification.verification_start(user_id=request.user.pk, **data.validated_data)
        body = {**_state(request.user.pk), "client_secret": started.client_secret, "url": started.url}
        return Response(VerificationStartedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: VerificationStateSerializer,
            404: OpenApiResponse(description="Nothing in progress."),
        },
        tags=["payments"],
        summary="Give up the verification in progress",
    )
    def delete(self, request: Request) -> Response:
        verification.verification_cancel(user_id=request.user.pk)
        return Response(VerificationStateSerializer(_state(request.user.pk)).data)
