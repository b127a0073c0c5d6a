from django.urls import path

from . import verification_views, views

urlpatterns = [
    path("wallet", views.WalletView.as_view(), name="payments-wallet"),
    path("wallet/transactions", views.WalletTransactionListView.as_view(), name="payments-transactions"),
    path("wallet/statements/<str:month>.csv", views.WalletStatementView.as_view(), name="payments-statement"),
    path("wallet/pin", views.PinView.as_view(), name="payments-pin"),
    path("wallet/pin/reset", views.PinResetView.as_view(), name="payments-pin-reset"),
    path("wallet/top-ups", views.TopUpView.as_view(), name="payments-top-ups"),
    path("transfers", views.TransferListView.as_view(), name="payments-transfers"),
    path("transfers/<int:transfer_id>", views.TransferDetailView.as_view(), name="payments-transfer"),
    path(
        "transfers/<int:transfer_id>/accept",
        views.TransferAcceptView.as_view(),
        name="payments-transfer-accept",
    ),
    path(
        "transfers/<int:transfer_id>/return",
        views.TransferReturnView.as_view(),
        name="payments-transfer-return",
    ),
]
urlpatterns += [
    path("red-packets", views.RedPacketCreateView.as_view(), name="payments-red-packets"),
    path("red-packets/<int:packet_id>", views.RedPacketDetailView.as_view(), name="payments-red-packet"),
    path(
        "red-packets/<int:packet_id>/grab", views.RedPacketGrabView.as_view(), name="payments-red-packet-grab"
    ),
]
urlpatterns += [
    path("cards", views.CardListView.as_view(), name="payments-cards"),
    path("cards/setup", views.CardSetupView.as_view(), name="payments-card-setup"),
    path("cards/<int:card_id>", views.CardDetailView.as_view(), name="payments-card"),
    path("webhooks/stripe", views.StripeWebhookView.as_view(), name="payments-webhook-stripe"),
]
urlpatterns += [
    path("withdrawals", views.WithdrawalListView.as_view(), name="payments-withdrawals"),
    path("withdrawals/<int:withdrawal_id>", views.WithdrawalDetailView.as_view(), name="payments-withdrawal"),
]
urlpatterns += [
    path("verification", verification_views.VerificationView.as_view(), name="payments-verification"),
]
# Payments II: merchants (owner) and checkout (payer); the merchant servers' API is /api/v1/pay/.
from .merchant_urls import urlpatterns as merchant_urlpatterns  # noqa: E402

urlpatterns += merchant_urlpatterns
