"""Payment providers (cards, payouts, real-name verification), chosen by ``PAYMENTS_PROVIDER``.

``sandbox`` is the embedded default (everything succeeds at once, no network); ``stripe`` is used
when ``STRIPE_SECRET_KEY`` is set. Services call providers outside their transactions (they may
be HTTP services) and book money only from a provider's confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from superapp.core.errors import ApplicationError


class ProviderError(ApplicationError):
    """The provider refused or failed (a card declined, the provider down): 402 for the client."""

    status_code = 402
    default_code = "provider_error"


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or failed on its side: safe to retry later."""

    status_code = 503
    default_code = "provider_unavailable"


@dataclass(frozen=True)
class TopUpResult:
    """What the provider said about a top-up it was asked to start."""

    provider_ref: str
    succeeded: bool  # True: the money is ours now; False: wait for the provider's webhook


@dataclass(frozen=True)
class CardSetup:
    setup_ref: str
    client_secret: str


@dataclass(frozen=True)
class CardInfo:
    provider_ref: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


class Provider(Protocol):
    name: str

    def customer_create(self, *, user_id: int) -> str: ...

    def card_setup(self, *, customer_id: str) -> CardSetup: ...

    def card_attach(self, *, customer_id: str, payment_method_id: str) -> CardInfo: ...

    def card_detach(self, *, payment_method_id: str) -> None: ...

    def start_top_up(
        self, *, top_up_id: int, amount: int, currency: str, customer_id: str, payment_method_id: str | None
    ) -> TopUpResult: ...

    def payout_create(
        self, *, withdrawal_id: int, amount: int, currency: str, destination: str
    ) -> PayoutResult: ...

    def identity_start(
        self, *, verification_id: int, user_id: int, legal_name: str, id_number: str
    ) -> IdentityStart: ...

    def identity_result(self, *, provider_ref: str) -> IdentityResult: ...

    def identity_cancel(self, *, provider_ref: str) -> None: ...

    def identity_status(self, *, provider_ref: str) -> IdentityStatus: ...

    def identity_redact(self, *, provider_ref: str) -> None: ...


@dataclass(frozen=True)
class IdentityResult:
    """A verified identity as the provider read it. ``id_number`` is in clear here only: the
    caller keeps its keyed hash (and a resident ID's check character), never the number."""

    legal_name: str
    id_type: str  # "cn_resident_id", or "<country>_<document type>" ("us_driving_license")
    id_number: str = field(repr=False)  # never in a log line or a traceback's locals


@dataclass(frozen=True)
class IdentityStatus:
    """Where a started verification stands at the provider, read when its webhook may have been
    lost, or when its owner asks for it again: Stripe's session ``status`` (requires_input, processing, verified, canceled) and its
    ``last_error`` (empty while the user has not submitted anything)."""

    status: str
    error_code: str = ""
    error_reason: str = ""
    # While it waits for the user: how the app opens it again (its owner lost the start's answer).
    client_secret: str = field(default="", repr=False)
    url: str = field(default="", repr=False)


@dataclass(frozen=True)
class IdentityStart:
    """A verification the provider started: ``result`` when it verified at once (sandbox), else
    the app finishes it with the provider's SDK (``client_secret``) or page (``url``) and the
    provider's webhook says how it ended."""

    provider_ref: str
    client_secret: str = ""
    url: str = ""
    result: IdentityResult | None = None


@dataclass(frozen=True)
class PayoutResult:
    provider_ref: str
    paid: bool  # True: done (sandbox); False: the provider's webhook will say paid or failed


PROVIDERS = {
    "sandbox": "payments.providers.sandbox.SandboxProvider",
    "stripe": "payments.providers.stripe.StripeProvider",
}


def get_provider() -> Provider:
    return import_string(PROVIDERS[settings.PAYMENTS_PROVIDER])()
