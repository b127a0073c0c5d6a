"""The Stripe provider, through the official ``stripe`` library.

Cards: a SetupIntent for the app to confirm with Stripe's SDK, then the resulting PaymentMethod
attached to the user's Customer. Top-ups: an off-session PaymentIntent confirmed at once; the
wallet is credited only by the signed ``payment_intent.succeeded`` webhook
(``payments.services.provider_event_handle``), never by this call's answer.

Real-name verification: a Stripe Identity VerificationSession of type ``document`` whose
``client_secret`` (Stripe.js / the mobile SDK) or ``url`` (Stripe's hosted page) the app opens;
the outcome arrives by the signed ``identity.verification_session.*`` webhooks, and the verified
name and document are read back from the session's ``verified_outputs`` and its report. Once an
attempt has ended (and its outputs were stored), the session is redacted: Stripe deletes the
document images, the selfie and the data it read.
"""

from __future__ import annotations

import re

import stripe
from django.conf import settings
from django.utils.translation import gettext as _

from . import (
    CardInfo,
    CardSetup,
    IdentityResult,
    IdentityStart,
    IdentityStatus,
    PayoutResult,
    ProviderError,
    ProviderUnavailable,
    TopUpResult,
)
from .sandbox import legal_name_normalize

# Han, kana and Hangul: names written family name first with no space ("李明", "山田太郎").
_CJK_NAME = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f·]+"
)


def _legal_name(first: str, last: str) -> str:
    """The name as the document writes it: a CJK name family name first with no space ("李明",
    as the sandbox stores the same person), any other "given family"."""
    first, last = legal_name_normalize(first), legal_name_normalize(last)
    if first and last and _CJK_NAME.fullmatch(first) and _CJK_NAME.fullmatch(last):
        return last + first
    return f"{first} {last}".strip()


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

    def identity_start(
        self, *, verification_id: int, user_id: int, legal_name: str, id_number: str
    ) -> IdentityStart:
        """A document check with a matching selfie; Stripe's own UI collects the document, so
        the typed ``legal_name`` / ``id_number`` are not used."""
        try:
            session = _client().v1.identity.verification_sessions.create(
                params={
                    "type": "document",
                    "client_reference_id": str(user_id),
                    "metadata": {"verification_id": str(verification_id), "user_id": str(user_id)},
                    "options": {"document": {"require_matching_selfie": True}},
                },
                options={"idempotency_key": f"identity-{verification_id}"},
            )
        except stripe.StripeError as exc:
            raise ProviderUnavailable(
                _("The verification service is not available. Try again later.")
            ) from exc
        return IdentityStart(
            provider_ref=session.id, client_secret=session.client_secret or "", url=session.url or ""
        )

    def identity_result(self, *, provider_ref: str) -> IdentityResult:
        """The verified name (the session's ``verified_outputs``, expanded) and the document
        (its last report, ``document.number`` expanded: Stripe returns the number only when
        asked). Network failures propagate as ProviderUnavailable so that the task retries.

        Raises:
            ProviderError ``identity_not_verified``: the session is not verified, or its report
                carries no document number (nothing to bind the identity to).
        """
        client = _client()
        try:
            session = client.v1.identity.verification_sessions.retrieve(
                provider_ref, params={"expand": ["verified_outputs"]}
            )
            report_id = session.last_verification_report
            if session.status != "verified" or not isinstance(report_id, str) or not report_id:
                raise ProviderError(_("The identity is not verified."), code="identity_not_verified")
            report = client.v1.identity.verification_reports.retrieve(
                report_id, params={"expand": ["document.number"]}
            )
        except stripe.InvalidRequestError as exc:
            raise ProviderError(_("The identity is not verified."), code="identity_not_verified") from exc
        except stripe.StripeError as exc:
            raise ProviderUnavailable(_("The verification service is not available.")) from exc
        if getattr(session, "redaction", None):
            # Deleted at Stripe (an ended attempt's session, verified again in a race): its fields
            # are "[redacted]" placeholders, never an identity to bind.
            raise ProviderError(_("The identity is not verified."), code="identity_not_verified")
        outputs = getattr(session, "verified_outputs", None)
        document = getattr(report, "document", None)
        number = getattr(document, "number", None)
        if not number:
            raise ProviderError(_("The document could not be read."), code="identity_not_verified")
        first = getattr(outputs, "first_name", None) or getattr(document, "first_name", None) or ""
        last = getattr(outputs, "last_name", None) or getattr(document, "last_name", None) or ""
        country = str(getattr(document, "issuing_country", None) or "").lower()
        kind = str(getattr(document, "type", None) or "document")
        # A Chinese resident ID card is one identity whichever provider read it.
        id_type = "cn_resident_id" if (country, kind) == ("cn", "id_card") else f"{country}_{kind}"
        return IdentityResult(legal_name=_legal_name(first, last), id_type=id_type, id_number=number)

    def identity_cancel(self, *, provider_ref: str) -> None:
        """Cancel a session still waiting for the user (Stripe refuses once it is processing
        or ended: ProviderError ``verification_processing``)."""
        try:
            _client().v1.identity.verification_sessions.cancel(provider_ref)
        except stripe.InvalidRequestError as exc:
            raise ProviderError(
                _("This verification is being processed and can no longer be canceled."),
                code="verification_processing",
                status_code=409,
            ) from exc
        except stripe.StripeError as exc:
            raise ProviderUnavailable(_("The verification service is not available.")) from exc

    def identity_status(self, *, provider_ref: str) -> IdentityStatus:
        """The session's status and last error, for an attempt whose webhook may have been lost
        (the sweeper) or whose cancel Stripe refused; its ``client_secret`` and ``url`` while it
        waits for the user (Stripe gives them to the secret key's holder again).

        Raises:
            ProviderUnavailable: Stripe could not be reached or does not know the session.
        """
        try:
            session = _client().v1.identity.verification_sessions.retrieve(provider_ref)
        except stripe.StripeError as exc:
            raise ProviderUnavailable(_("The verification service is not available.")) from exc
        error = getattr(session, "last_error", None)
        return IdentityStatus(
            status=str(session.status or ""),
            error_code=str(getattr(error, "code", None) or "") if error else "",
            error_reason=str(getattr(error, "reason", None) or "") if error else "",
            client_secret=str(getattr(session, "client_secret", None) or ""),
            url=str(getattr(session, "url", None) or ""),
        )

    def identity_redact(self, *, provider_ref: str) -> None:
        """Ask Stripe to delete the session and everything tied to it (reports, document images,
        selfie, events; it takes Stripe up to four days, ``redaction.status`` ``processing`` then
        ``redacted``). A session waiting for the user is canceled by it. Already redacted (Stripe
        answers with the session) or unknown to Stripe: nothing is kept there, done.

        No Idempotency-Key of ours: Stripe would replay a refusal to a later retry of the same
        key (the library still sends one of its own with its network retries).

        Raises:
            ProviderError ``redaction_refused`` (409): Stripe refuses now (a session being
                processed cannot be redacted); the sweeper asks again later.
            ProviderUnavailable: Stripe could not be reached or failed on its side.
        """
        try:
            _client().v1.identity.verification_sessions.redact(provider_ref)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404 or exc.code == "resource_missing":
                return
            raise ProviderError(
                _("The verification's data cannot be deleted yet."), code="redaction_refused", status_code=409
            ) from exc
        except stripe.StripeError as exc:
            raise ProviderUnavailable(_("The verification service is not available.")) from exc
