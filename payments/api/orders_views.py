"""The merchant orders API (``/api/v1/pay/``): server to server, HMAC-signed both ways.

Thin views over ``payments.orders``: create (idempotent on ``out_trade_no``), query, close,
micropay (charge a payment code), refund (idempotent on ``out_refund_no``), query a refund.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import events, merchant_selectors, orders
from ..merchants import qr_png
from . import merchant_serializers as s
from .merchant_auth import SignedMerchantView

TAGS = ["pay (merchant servers)"]


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class OrderCreateView(SignedMerchantView):
    @extend_schema(
        request=s.OrderCreateSerializer,
        responses={201: s.OrderSerializer, 200: s.OrderSerializer},
        tags=TAGS,
        summary="Create an order (dynamic QR); the same out_trade_no and parameters return it again",
    )
    def post(self, request: Request) -> Response:
        order, created = orders.order_create(
            merchant_id=self.merchant.id, **_valid(s.OrderCreateSerializer, request.data)
        )
        return Response(
            s.OrderSerializer(order).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MicropayView(SignedMerchantView):
    @extend_schema(
        request=s.MicropaySerializer,
        responses={201: s.OrderSerializer, 200: s.OrderSerializer},
        tags=TAGS,
        summary="Charge a payer's payment code: paid at once, or user_paying until the payer's PIN",
    )
    def post(self, request: Request) -> Response:
        order, created = orders.order_micropay(
            merchant_id=self.merchant.id, **_valid(s.MicropaySerializer, request.data)
        )
        return Response(
            s.OrderSerializer(order).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class OrderDetailView(SignedMerchantView):
    @extend_schema(responses=s.OrderSerializer, tags=TAGS, summary="Query an order by its id")
    def get(self, request: Request, order_id: int) -> Response:
        order = merchant_selectors.order_get(merchant_id=self.merchant.id, order_id=order_id)
        return Response(s.OrderSerializer(order).data)


class OrderByOutTradeNoView(SignedMerchantView):
    @extend_schema(responses=s.OrderSerializer, tags=TAGS, summary="Query an order by out_trade_no")
    def get(self, request: Request, out_trade_no: str) -> Response:
        order = merchant_selectors.order_get(merchant_id=self.merchant.id, out_trade_no=out_trade_no)
        return Response(s.OrderSerializer(order).data)


class OrderCloseView(SignedMerchantView):
    @extend_schema(request=None, responses=s.OrderSerializer, tags=TAGS, summary="Close an unpaid order")
    def post(self, request: Request, order_id: int) -> Response:
        order = orders.order_close(merchant_id=self.merchant.id, order_id=order_id)
        return Response(s.OrderSerializer(order).data)


class OrderCloseByOutTradeNoView(SignedMerchantView):
    @extend_schema(
        request=None, responses=s.OrderSerializer, tags=TAGS, summary="Close an unpaid order by out_trade_no"
    )
    def post(self, request: Request, out_trade_no: str) -> Response:
        order = orders.order_close(merchant_id=self.merchant.id, out_trade_no=out_trade_no)
        return Response(s.OrderSerializer(order).data)


class OrderQrView(SignedMerchantView):
    @extend_schema(
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The code_url as a QR code.")
        },
        tags=TAGS,
        summary="The order's QR code (PNG)",
    )
    def get(self, request: Request, order_id: int) -> HttpResponse:
        order = merchant_selectors.order_get(merchant_id=self.merchant.id, order_id=order_id)
        return HttpResponse(qr_png(events.order_code_url(order)), content_type="image/png")


class RefundCreateView(SignedMerchantView):
    @extend_schema(
        request=s.RefundCreateSerializer,
        responses={201: s.RefundSerializer, 200: s.RefundSerializer},
        tags=TAGS,
        summary="Refund a paid order, fully or partly; idempotent on out_refund_no",
    )
    def post(self, request: Request) -> Response:
        refund, created = orders.refund_create(
            merchant_id=self.merchant.id, **_valid(s.RefundCreateSerializer, request.data)
        )
        return Response(
            s.RefundSerializer(refund).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class RefundDetailView(SignedMerchantView):
    @extend_schema(responses=s.RefundSerializer, tags=TAGS, summary="Query a refund by out_refund_no")
    def get(self, request: Request, out_refund_no: str) -> Response:
        refund = merchant_selectors.refund_get(merchant_id=self.merchant.id, out_refund_no=out_refund_no)
        return Response(s.RefundSerializer(refund).data)
