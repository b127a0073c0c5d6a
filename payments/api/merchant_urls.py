"""Payments II for app users, under ``/api/v1/payments/``: merchants (owner) and checkout (payer)."""

from django.urls import path

from . import merchant_views as v

urlpatterns = [
    path("merchants", v.MerchantListView.as_view(), name="payments-merchants"),
    path("merchants/<int:merchant_id>", v.MerchantDetailView.as_view(), name="payments-merchant"),
    path(
        "merchants/<int:merchant_id>/keys", v.MerchantKeyRotateView.as_view(), name="payments-merchant-keys"
    ),
    path(
        "merchants/<int:merchant_id>/notify-secret",
        v.MerchantNotifySecretView.as_view(),
        name="payments-merchant-notify-secret",
    ),
    path(
        "merchants/<int:merchant_id>/static-qr.png",
        v.MerchantStaticQrView.as_view(),
        name="payments-merchant-qr",
    ),
    path(
        "merchants/<int:merchant_id>/orders",
        v.MerchantOrderListView.as_view(),
        name="payments-merchant-orders",
    ),
    path(
        "merchants/<int:merchant_id>/settlements",
        v.MerchantSettlementListView.as_view(),
        name="payments-merchant-settlements",
    ),
    path(
        "merchants/<int:merchant_id>/settlements.csv",
        v.MerchantSettlementReportView.as_view(),
        name="payments-merchant-settlement-report",
    ),
    path(
        "merchants/<int:merchant_id>/payouts",
        v.MerchantPayoutView.as_view(),
        name="payments-merchant-payouts",
    ),
    path(
        "checkout/merchants/<str:static_code>",
        v.CheckoutMerchantView.as_view(),
        name="payments-checkout-merchant",
    ),
    path(
        "checkout/merchants/<str:static_code>/pay",
        v.CheckoutStaticPayView.as_view(),
        name="payments-checkout-static-pay",
    ),
    path("checkout/orders/<str:code>", v.CheckoutOrderView.as_view(), name="payments-checkout-order"),
    path(
        "checkout/orders/<str:code>/pay", v.CheckoutOrderPayView.as_view(), name="payments-checkout-order-pay"
    ),
    path("payment-codes", v.PaymentCodeView.as_view(), name="payments-payment-codes"),
]
