"""Payments II for app users (JWT): managing one's merchants, and paying merchants (checkout).

Owner: ``merchants`` (create with a first API key, list, get, update, rotate the key or the
notification secret, static QR code, orders, settlements and their CSV report, payouts).
Payer: ``checkout/merchants/<static code>`` (static QR: the payer types the amount),
``checkout/orders/<code>`` (dynamic QR or a payment code waiting for the PIN),
``payment-codes`` (a one-time code for the merchant to scan). Money-moving POSTs honour
``Idempotency-Key``.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from superapp.core.errors import ValidationFailed
from superapp.core.idempotency import idempotent

from .. import merchant_selectors, merchants, orders, payment_codes
from ..models import Merchant, MerchantOrder, SettlementBatch
from . import merchant_serializers as s
from .views import IDEMPOTENCY_HEADER

TAGS = ["payments: merchants"]
CHECKOUT_TAGS = ["payments: checkout"]


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _merchant_body(merchant: Merchant) -> dict:
    return {
        "id": merchant.id,
        "kind": merchant.kind,
        "external_ref": merchant.external_ref,
        "name": merchant.name,
        "currency": merchant.currency,
        "fee_rate_bps": merchant.fee_rate_bps,
        "notify_url": merchant.notify_url,
        "status": merchant.status,
        "static_qr_url": merchants.static_qr_url(merchant),
        "created_at": merchant.created_at,
    }


def _merchant_detail(merchant: Merchant) -> dict:
    balances = merchant_selectors.merchant_balances(merchant=merchant)
    return {
        **_merchant_body(merchant),
        "notify_secret": merchant.notify_secret,
        "balances": {"pending": balances.pending, "available": balances.available},
        "keys": [
            {"key_id": k.key_id, "created_at": k.created_at, "expires_at": k.expires_at}
            for k in merchant_selectors.merchant_live_keys(merchant_id=merchant.id)
        ],
    }


class MerchantListView(APIView):
    @extend_schema(responses=s.MerchantSerializer(many=True), tags=TAGS, summary="My merchants")
    def get(self, request: Request) -> Response:
        rows = merchant_selectors.merchants_for(user_id=request.user.pk)
        return Response(s.MerchantSerializer([_merchant_body(m) for m in rows], many=True).data)

    @extend_schema(
        request=s.MerchantCreateSerializer,
        responses={201: s.MerchantCreatedSerializer},
        tags=TAGS,
        summary="Open a merchant; the answer holds its first API key's secret (shown once)",
    )
    def post(self, request: Request) -> Response:
        issued = merchants.merchant_create(
            owner_id=request.user.pk, **_valid(s.MerchantCreateSerializer, request.data)
        )
        body = {
            **_merchant_detail(issued.merchant),
            "api_key": {"key_id": issued.key.key_id, "secret": issued.secret},
        }
        return Response(s.MerchantCreatedSerializer(body).data, status=status.HTTP_201_CREATED)


class MerchantDetailView(APIView):
    @extend_schema(responses=s.MerchantDetailSerializer, tags=TAGS, summary="One of my merchants")
    def get(self, request: Request, merchant_id: int) -> Response:
        merchant = merchant_selectors.merchant_get(user_id=request.user.pk, merchant_id=merchant_id)
        return Response(s.MerchantDetailSerializer(_merchant_detail(merchant)).data)

    @extend_schema(
        request=s.MerchantUpdateSerializer,
        responses=s.MerchantDetailSerializer,
        tags=TAGS,
        summary="Rename a merchant or change its notification URL",
    )
    def patch(self, request: Request, merchant_id: int) -> Response:
        merchant = merchants.merchant_update(
            user_id=request.user.pk,
            merchant_id=merchant_id,
            **_valid(s.MerchantUpdateSerializer, request.data),
        )
        return Response(s.MerchantDetailSerializer(_merchant_detail(merchant)).data)


class MerchantKeyRotateView(APIView):
    @extend_schema(
        request=s.KeyRotateSerializer,
        responses={201: s.IssuedKeySerializer},
        tags=TAGS,
        summary="Issue a new API key (the secret is shown once); the old ones stop after grace_hours",
    )
    def post(self, request: Request, merchant_id: int) -> Response:
        data = _valid(s.KeyRotateSerializer, request.data)
        grace = timedelta(hours=data["grace_hours"]) if "grace_hours" in data else None
        issued = merchants.merchant_key_rotate(user_id=request.user.pk, merchant_id=merchant_id, grace=grace)
        return Response(
            s.IssuedKeySerializer({"key_id": issued.key.key_id, "secret": issued.secret}).data,
            status=status.HTTP_201_CREATED,
        )


class MerchantNotifySecretView(APIView):
    @extend_schema(
        request=None,
        responses=s.MerchantDetailSerializer,
        tags=TAGS,
        summary="A new secret for our notifications' signatures",
    )
    def post(self, request: Request, merchant_id: int) -> Response:
        merchant = merchants.merchant_notify_secret_rotate(user_id=request.user.pk, merchant_id=merchant_id)
        return Response(s.MerchantDetailSerializer(_merchant_detail(merchant)).data)


class MerchantStaticQrView(APIView):
    @extend_schema(
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The static QR code.")
        },
        tags=TAGS,
        summary="The merchant's static QR code (PNG): the payer scans it and types the amount",
    )
    def get(self, request: Request, merchant_id: int) -> HttpResponse:
        png = merchants.merchant_static_qr_png(user_id=request.user.pk, merchant_id=merchant_id)
        return HttpResponse(png, content_type="image/png")


class MerchantOrderListView(ListAPIView):
    serializer_class = s.OrderSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return MerchantOrder.objects.none()
        merchant = merchant_selectors.merchant_get(
            user_id=self.request.user.pk, merchant_id=self.kwargs["merchant_id"]
        )
        wanted = self.request.query_params.get("status")
        if wanted and wanted not in MerchantOrder.Status.values:
            raise ValidationFailed(fields={"status": [_("Not a known status.")]})
        return merchant_selectors.orders_for_merchant(merchant_id=merchant.id, status=wanted)

    @extend_schema(
        tags=TAGS,
        summary="A merchant's orders, newest first",
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=MerchantOrder.Status.values)],
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


def _date_param(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = parse_date(raw) if len(raw) == 10 else None
    except ValueError:  # well formed, not a date (2026-02-30)
        value = None
    if value is None:
        raise ValidationFailed(fields={name: [_("A date: YYYY-MM-DD.")]})
    return value


DATE_PARAMS = [OpenApiParameter("since", OpenApiTypes.DATE), OpenApiParameter("until", OpenApiTypes.DATE)]


class MerchantSettlementListView(ListAPIView):
    serializer_class = s.SettlementSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SettlementBatch.objects.none()
        merchant = merchant_selectors.merchant_get(
            user_id=self.request.user.pk, merchant_id=self.kwargs["merchant_id"]
        )
        return merchant_selectors.settlements_for(
            merchant_id=merchant.id,
            since=_date_param(self.request, "since"),
            until=_date_param(self.request, "until"),
        )

    @extend_schema(
        tags=TAGS, summary="A merchant's settlement batches (T+1), newest first", parameters=DATE_PARAMS
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class _Echo:
    def write(self, value):
        return value


def settlement_csv_response(
    *, merchant_id: int, since: date | None, until: date | None
) -> StreamingHttpResponse:
    """The settlement report as CSV (also served by the admin)."""
    writer = csv.writer(_Echo())
    rows = merchant_selectors.settlement_report_rows(merchant_id=merchant_id, since=since, until=until)
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="settlements-{merchant_id}-{stamp}.csv"'
    return response


class MerchantSettlementReportView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Settlement report (CSV): one line per settled day and a total",
        parameters=DATE_PARAMS,
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request, merchant_id: int) -> StreamingHttpResponse:
        merchant = merchant_selectors.merchant_get(user_id=request.user.pk, merchant_id=merchant_id)
        return settlement_csv_response(
            merchant_id=merchant.id, since=_date_param(request, "since"), until=_date_param(request, "until")
        )


class MerchantPayoutView(APIView):
    @extend_schema(
        request=s.PayoutCreateSerializer,
        responses={201: s.PayoutSerializer},
        tags=TAGS,
        parameters=[IDEMPOTENCY_HEADER],
        summary="Move settled money to my wallet",
    )
    @idempotent
    def post(self, request: Request, merchant_id: int) -> Response:
        payout = merchants.merchant_payout(
            user_id=request.user.pk, merchant_id=merchant_id, **_valid(s.PayoutCreateSerializer, request.data)
        )
        body = {
            "id": payout.id,
            "merchant_id": payout.merchant_id,
            "amount": payout.amount,
            "currency": payout.currency,
            "entry_id": payout.entry_id,
            "created_at": payout.created_at,
        }
        return Response(s.PayoutSerializer(body).data, status=status.HTTP_201_CREATED)


# --- checkout (the payer) -----------------------------------------------------------------------


class CheckoutMerchantView(APIView):
    @extend_schema(
        responses=s.CheckoutMerchantSerializer,
        tags=CHECKOUT_TAGS,
        summary="The merchant behind a static QR code",
    )
    def get(self, request: Request, static_code: str) -> Response:
        merchant = merchant_selectors.merchant_for_static_code(static_code=static_code)
        return Response(
            s.CheckoutMerchantSerializer(
                {"id": merchant.id, "name": merchant.name, "currency": merchant.currency}
            ).data
        )


class CheckoutStaticPayView(APIView):
    @extend_schema(
        request=s.StaticPaySerializer,
        responses={201: s.CheckoutOrderSerializer},
        tags=CHECKOUT_TAGS,
        parameters=[IDEMPOTENCY_HEADER],
        summary="Pay a merchant through its static QR code (the payer types the amount)",
    )
    @idempotent
    def post(self, request: Request, static_code: str) -> Response:
        order = orders.merchant_static_pay(
            payer_id=request.user.pk, static_code=static_code, **_valid(s.StaticPaySerializer, request.data)
        )
        return Response(s.CheckoutOrderSerializer(order).data, status=status.HTTP_201_CREATED)


class CheckoutOrderView(APIView):
    @extend_schema(
        responses=s.CheckoutOrderSerializer, tags=CHECKOUT_TAGS, summary="An order by the code its QR carries"
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(s.CheckoutOrderSerializer(merchant_selectors.order_for_payer(code=code)).data)


class CheckoutOrderPayView(APIView):
    @extend_schema(
        request=s.CheckoutPaySerializer,
        responses=s.CheckoutOrderSerializer,
        tags=CHECKOUT_TAGS,
        parameters=[IDEMPOTENCY_HEADER],
        summary="Pay an order with the PIN (dynamic QR, or confirm a payment code over the no-PIN limit)",
    )
    @idempotent
    def post(self, request: Request, code: str) -> Response:
        order = orders.order_pay(
            payer_id=request.user.pk, code=code, **_valid(s.CheckoutPaySerializer, request.data)
        )
        return Response(s.CheckoutOrderSerializer(order).data)


class PaymentCodeView(APIView):
    @extend_schema(
        request=None,
        responses={201: s.PaymentCodeSerializer},
        tags=CHECKOUT_TAGS,
        summary="A one-time payment code (about a minute) for a merchant to scan; ends the previous one",
    )
    def post(self, request: Request) -> Response:
        code, row = payment_codes.payment_code_issue(user_id=request.user.pk)
        body = {
            "code": code,
            "qr_png_base64": payment_codes.payment_code_qr_base64(code),
            "expires_at": row.expires_at,
        }
        response = Response(s.PaymentCodeSerializer(body).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response
