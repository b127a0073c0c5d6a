"""The Stripe provider, through the official ``stripe`` library.

Cards: a SetupIntent for the app to confirm with Stripe's SDK, then the resulting PaymentMethod
attached to the user's Customer. Top-ups: an off-session PaymentIntent confirmed at once; the
wallet is credited only by the signed ``payment_intent.succeeded`` webhook
(``payments.services.provider_event_handle``), never by this call's answer.
"""

from __future__ import annotations

import stripe
from django.conf import settings
from django.utils.translation import gettext as _

from . import CardInfo, CardSetup, PayoutResult, ProviderError, ProviderUnavailable, TopUpResult


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=2,  # the library sends an Idempotency-Key with each retry
    )


class StripeProvider:
    name = "stripe"

    def customer_create(self, *, user_id: int) -> str:
        try:
            customer = _client().v1.customers.create(params={"metadata": {"user_id": str(user_id)}})
        except stripe.StripeError as exc:
            raise ProviderError(_("The card service is not available. Try again later.")) from exc
        return customer.id

    def card_setup(self, *, customer_id: str) -> CardSetup:
        try:
            intent = _client().v1.setup_intents.create(
                params={"customer": customer_id, "usage": "off_session", "payment_method_types": ["card"]}
            )
        except stripe.StripeError as exc:
            raise ProviderError(_("The card service is not available. Try again later.")) from exc
        return CardSetup(setup_ref=intent.id, client_secret=intent.client_secret or "")

    def card_attach(self, *, customer_id: str, payment_method_id: str) -> CardInfo:
        try:
            method = _client().v1.payment_methods.attach(payment_method_id, params={"customer": customer_id})
        except stripe.InvalidRequestError as exc:
            raise ProviderError(_("This card could not be linked."), code="card_rejected") from exc
        except stripe.StripeError as exc:
            raise ProviderError(_("The card service is not available. Try again later.")) from exc
        card = method.card
        return CardInfo(
            provider_ref=method.id,
            brand=card.brand if card else "",
            last4=card.last4 if card else "",
            exp_month=card.exp_month if card else None,
            exp_year=card.exp_year if card else None,
        )

    def card_detach(self, *, payment_method_id: str) -> None:
        try:
            _client().v1.payment_methods.detach(payment_method_id)
        except stripe.InvalidRequestError:
            return  # already detached at Stripe: the goal is reached
        except stripe.StripeError as exc:
            raise ProviderError(_("The card service is not available. Try again later.")) from exc

    def start_top_up(
        self, *, top_up_id: int, amount: int, currency: str, customer_id: str, payment_method_id: str | None
    ) -> TopUpResult:
        if not payment_method_id:
            raise ProviderError(_("Choose a linked card."), code="card_required", status_code=400)
        try:
            intent = _client().v1.payment_intents.create(
                params={
                    "amount": amount,
                    "currency": currency.lower(),
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "confirm": True,
                    "off_session": True,
                    "metadata": {"top_up_id": str(top_up_id)},
                },
                options={"idempotency_key": f"topup-{top_up_id}"},
            )
        except stripe.CardError as exc:
            raise ProviderError(_("The card was declined."), code="card_declined") from exc
        except stripe.StripeError as exc:
            raise ProviderError(_("The card service is not available. Try again later.")) from exc
        return TopUpResult(provider_ref=intent.id, succeeded=False)

    def payout_create(
        self, *, withdrawal_id: int, amount: int, currency: str, destination: str
    ) -> PayoutResult:
        """Raises ProviderError when Stripe refuses (the caller returns the hold); network
        failures propagate so that the task is retried with the same idempotency key."""
        try:
            payout = _client().v1.payouts.create(
                params={
                    "amount": amount,
                    "currency": currency.lower(),
                    "destination": destination,
                    "metadata": {"withdrawal_id": str(withdrawal_id)},
                },
                options={"idempotency_key": f"withdrawal-{withdrawal_id}"},
            )
        except (stripe.InvalidRequestError, stripe.CardError) as exc:
            raise ProviderError(str(exc.user_message or exc), code="payout_rejected") from exc
        except stripe.StripeError as exc:
            raise ProviderUnavailable(_("The payout service is not available.")) from exc
        return PayoutResult(provider_ref=payout.id, paid=False)
