"""The merchant orders API, mounted at ``/api/v1/pay/`` (signed requests, see payments.signing)."""

from django.urls import path

from . import orders_views as v

urlpatterns = [
    path("orders", v.OrderCreateView.as_view(), name="pay-orders"),
    path("orders/micropay", v.MicropayView.as_view(), name="pay-micropay"),
    path("orders/<int:order_id>", v.OrderDetailView.as_view(), name="pay-order"),
    path("orders/<int:order_id>/close", v.OrderCloseView.as_view(), name="pay-order-close"),
    path("orders/<int:order_id>/qr.png", v.OrderQrView.as_view(), name="pay-order-qr"),
    path("orders/out-trade-no/<str:out_trade_no>", v.OrderByOutTradeNoView.as_view(), name="pay-order-out"),
    path(
        "orders/out-trade-no/<str:out_trade_no>/close",
        v.OrderCloseByOutTradeNoView.as_view(),
        name="pay-order-out-close",
    ),
    path("refunds", v.RefundCreateView.as_view(), name="pay-refunds"),
    path("refunds/<str:out_refund_no>", v.RefundDetailView.as_view(), name="pay-refund"),
]
