"""Payments REST API: thin views. Every money-moving POST honours ``Idempotency-Key``."""

from __future__ import annotations

import csv
import re
from datetime import datetime

import stripe
from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from superapp.core.errors import NotFound, ValidationFailed
from superapp.core.idempotency import idempotent

from .. import events, red_packets, selectors, services
from ..models import Card, JournalEntry, Posting, Transfer, Withdrawal
from . import serializers as s

NO_CONTENT = OpenApiResponse(description="Done.")
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="A unique key per operation; retries with the same key and body replay the first answer (24 h).",
)


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _wallet_body(user_id: int) -> dict:
    row = selectors.wallet_settings(user_id=user_id)
    return {
        "currency": settings.PAYMENTS_DEFAULT_CURRENCY,
        "balance": selectors.wallet_balance(user_id=user_id),
        "verification_level": row.verification_level,
        "limits": settings.PAYMENTS_LIMITS[row.verification_level],
        "pin_set": bool(row.pin_hash),
        "pin_locked_until": row.pin_locked_until,
        "auto_accept_transfers": row.auto_accept_transfers,
    }


class WalletView(APIView):
    @extend_schema(
        responses=s.WalletSerializer, tags=["payments"], summary="My wallet: balance, limits, settings"
    )
    def get(self, request: Request) -> Response:
        return Response(s.WalletSerializer(_wallet_body(request.user.pk)).data)

    @extend_schema(
        request=s.WalletSettingsUpdateSerializer,
        responses=s.WalletSerializer,
        tags=["payments"],
        summary="Change wallet settings (auto-accept transfers)",
    )
    def patch(self, request: Request) -> Response:
        data = _valid(s.WalletSettingsUpdateSerializer, request.data)
        services.wallet_settings_update(user_id=request.user.pk, **data)
        return Response(s.WalletSerializer(_wallet_body(request.user.pk)).data)


def _when(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise ValidationFailed(fields={name: [_("An ISO 8601 date-time.")]})
    return value if timezone.is_aware(value) else timezone.make_aware(value)


class WalletTransactionListView(ListAPIView):
    serializer_class = s.WalletTransactionSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Posting.objects.none()
        params = self.request.query_params
        kind = params.get("kind")
        if kind and kind not in JournalEntry.Kind.values:
            raise ValidationFailed(fields={"kind": [_("Not a known kind.")]})
        direction = params.get("direction")
        if direction and direction not in ("in", "out"):
            raise ValidationFailed(fields={"direction": [_("in or out")]})
        return selectors.wallet_history(
            user_id=self.request.user.pk,
            kind=kind,
            direction=direction,
            since=_when(self.request, "since"),
            until=_when(self.request, "until"),
        )

    @extend_schema(
        tags=["payments"],
        summary="My wallet's movements, newest first",
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=JournalEntry.Kind.values),
            OpenApiParameter("direction", OpenApiTypes.STR, enum=["in", "out"]),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
        ],
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class _Echo:
    def write(self, value):
        return value


class WalletStatementView(APIView):
    @extend_schema(
        tags=["payments"], summary="Monthly statement (CSV)", responses={(200, "text/csv"): OpenApiTypes.STR}
    )
    def get(self, request: Request, month: str) -> StreamingHttpResponse:
        match = re.fullmatch(r"(\d{4})-(\d{2})", month)
        if not match or not 1 <= int(match[2]) <= 12:
            raise NotFound()
        year, number = int(match[1]), int(match[2])
        start = timezone.make_aware(datetime(year, number, 1))
        end = timezone.make_aware(datetime(year + number // 12, number % 12 + 1, 1))
        writer = csv.writer(_Echo())
        rows = selectors.wallet_statement_rows(user_id=request.user.pk, start=start, end=end)
        response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="statement-{month}.csv"'
        return response


class PinView(APIView):
    @extend_schema(
        request=s.PinSetSerializer,
        responses={204: NO_CONTENT},
        tags=["payments"],
        summary="Set the first payment PIN",
    )
    def post(self, request: Request) -> Response:
        services.pin_set(user_id=request.user.pk, **_valid(s.PinSetSerializer, request.data))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=s.PinChangeSerializer,
        responses={204: NO_CONTENT},
        tags=["payments"],
        summary="Change the payment PIN (the old one counts toward the lock)",
    )
    def put(self, request: Request) -> Response:
        services.pin_change(user_id=request.user.pk, **_valid(s.PinChangeSerializer, request.data))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PinResetView(APIView):
    throttle_scope = "auth"

    @extend_schema(
        request=s.PinResetSerializer,
        responses={204: NO_CONTENT},
        tags=["payments"],
        summary="Forgotten PIN: reset it with the account password",
    )
    def post(self, request: Request) -> Response:
        services.pin_reset(user_id=request.user.pk, **_valid(s.PinResetSerializer, request.data))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TopUpView(APIView):
    @extend_schema(
        request=s.TopUpCreateSerializer,
        responses={201: s.TopUpSerializer},
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Add money from a card",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        top_up = services.top_up_create(
            user_id=request.user.pk, **_valid(s.TopUpCreateSerializer, request.data)
        )
        return Response(s.TopUpSerializer(top_up).data, status=status.HTTP_201_CREATED)


class TransferListView(ListAPIView):
    serializer_class = s.TransferSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Transfer.objects.none()
        return selectors.transfers_for(user_id=self.request.user.pk)

    @extend_schema(tags=["payments"], summary="Transfers I sent or received")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.TransferCreateSerializer,
        responses={201: s.TransferSerializer},
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Send money to a friend, or to one member of a group chat",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _valid(s.TransferCreateSerializer, request.data)
        transfer = services.transfer_create(sender_id=request.user.pk, **data)
        return Response(s.TransferSerializer(transfer).data, status=status.HTTP_201_CREATED)


class TransferDetailView(APIView):
    @extend_schema(responses=s.TransferSerializer, tags=["payments"], summary="One transfer")
    def get(self, request: Request, transfer_id: int) -> Response:
        transfer = selectors.transfer_get(user_id=request.user.pk, transfer_id=transfer_id)
        return Response(s.TransferSerializer(transfer).data)


class TransferAcceptView(APIView):
    @extend_schema(
        request=None,
        responses=s.TransferSerializer,
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Accept a transfer sent to me",
    )
    @idempotent
    def post(self, request: Request, transfer_id: int) -> Response:
        transfer = services.transfer_accept(user_id=request.user.pk, transfer_id=transfer_id)
        return Response(s.TransferSerializer(transfer).data)


class TransferReturnView(APIView):
    @extend_schema(
        request=None,
        responses=s.TransferSerializer,
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Send a transfer back to its sender",
    )
    @idempotent
    def post(self, request: Request, transfer_id: int) -> Response:
        transfer = services.transfer_return(user_id=request.user.pk, transfer_id=transfer_id)
        return Response(s.TransferSerializer(transfer).data)


class RedPacketCreateView(APIView):
    @extend_schema(
        request=s.RedPacketCreateSerializer,
        responses={201: s.RedPacketSerializer},
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Send a red packet (normal or lucky) into a chat",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _valid(s.RedPacketCreateSerializer, request.data)
        packet = red_packets.red_packet_send(sender_id=request.user.pk, **data)
        return Response(events.red_packet_detail(packet, []), status=status.HTTP_201_CREATED)


class RedPacketDetailView(APIView):
    @extend_schema(
        responses=s.RedPacketSerializer, tags=["payments"], summary="A red packet and who got what"
    )
    def get(self, request: Request, packet_id: int) -> Response:
        packet, grabs = selectors.red_packet_get(user_id=request.user.pk, packet_id=packet_id)
        return Response(events.red_packet_detail(packet, grabs))


class RedPacketGrabView(APIView):
    @extend_schema(
        request=None,
        responses={201: s.RedPacketGrabSerializer},
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Grab a share",
    )
    @idempotent
    def post(self, request: Request, packet_id: int) -> Response:
        grab = red_packets.red_packet_grab(user_id=request.user.pk, packet_id=packet_id)
        return Response(events.red_packet_grab_payload(grab.packet, grab), status=status.HTTP_201_CREATED)


class CardListView(ListAPIView):
    serializer_class = s.CardSerializer
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Card.objects.none()
        return selectors.cards_for(user_id=self.request.user.pk)

    @extend_schema(tags=["payments"], summary="My linked cards")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.CardLinkSerializer,
        responses={201: s.CardSerializer},
        tags=["payments"],
        summary="Link a card (the PaymentMethod of a confirmed SetupIntent)",
    )
    def post(self, request: Request) -> Response:
        card = services.card_link(user_id=request.user.pk, **_valid(s.CardLinkSerializer, request.data))
        return Response(s.CardSerializer(card).data, status=status.HTTP_201_CREATED)


class CardSetupView(APIView):
    @extend_schema(
        request=None,
        responses={201: s.CardSetupSerializer},
        tags=["payments"],
        summary="Start linking a card: a SetupIntent to confirm with the provider's SDK",
    )
    def post(self, request: Request) -> Response:
        setup = services.card_setup(user_id=request.user.pk)
        return Response(s.CardSetupSerializer(setup).data, status=status.HTTP_201_CREATED)


class CardDetailView(APIView):
    @extend_schema(responses={204: NO_CONTENT}, tags=["payments"], summary="Remove a card")
    def delete(self, request: Request, card_id: int) -> Response:
        services.card_remove(user_id=request.user.pk, card_id=card_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class StripeWebhookView(APIView):
    """Stripe's signed callbacks: verified with the stripe library, deduplicated by event id."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=s.WebhookAckSerializer,
        tags=["payments"],
        summary="Stripe webhook (Stripe-Signature required)",
    )
    def post(self, request: Request) -> Response:
        if not settings.STRIPE_WEBHOOK_SECRET:
            raise NotFound()
        try:
            event = stripe.Webhook.construct_event(
                request.body, request.headers.get("Stripe-Signature", ""), settings.STRIPE_WEBHOOK_SECRET
            )
        except stripe.SignatureVerificationError:
            raise ValidationFailed(
                _("The webhook signature is not valid."), code="invalid_signature"
            ) from None
        except ValueError:
            raise ValidationFailed(
                _("The webhook body is not a Stripe event."), code="invalid_payload"
            ) from None
        obj = (
            event.data.object.to_dict() if hasattr(event.data.object, "to_dict") else dict(event.data.object)
        )
        outcome = services.provider_event_handle(
            provider="stripe", event_id=event.id, type=event.type, obj=obj
        )
        return Response({"received": True, "outcome": outcome})


class WithdrawalListView(ListAPIView):
    serializer_class = s.WithdrawalSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Withdrawal.objects.none()
        return selectors.withdrawals_for(user_id=self.request.user.pk)

    @extend_schema(tags=["payments"], summary="My withdrawals to bank")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.WithdrawalCreateSerializer,
        responses={201: s.WithdrawalSerializer},
        tags=["payments"],
        parameters=[IDEMPOTENCY_HEADER],
        summary="Withdraw to a bank account (held until paid)",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _valid(s.WithdrawalCreateSerializer, request.data)
        withdrawal = services.withdrawal_create(
            user_id=request.user.pk, destination=data.pop("bank_account_id"), **data
        )
        return Response(s.WithdrawalSerializer(withdrawal).data, status=status.HTTP_201_CREATED)


class WithdrawalDetailView(APIView):
    @extend_schema(responses=s.WithdrawalSerializer, tags=["payments"], summary="One withdrawal")
    def get(self, request: Request, withdrawal_id: int) -> Response:
        withdrawal = selectors.withdrawal_get(user_id=request.user.pk, withdrawal_id=withdrawal_id)
        return Response(s.WithdrawalSerializer(withdrawal).data)
