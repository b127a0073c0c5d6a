"""The sandbox provider: cards link and top-ups succeed at once (the demo and most tests)."""

from __future__ import annotations

import secrets

from . import CardInfo, CardSetup, PayoutResult, TopUpResult


class SandboxProvider:
    name = "sandbox"

    def customer_create(self, *, user_id: int) -> str:
        return f"sandbox_cus_{user_id}"

    def card_setup(self, *, customer_id: str) -> CardSetup:
        ref = f"sandbox_seti_{secrets.token_hex(8)}"
        return CardSetup(setup_ref=ref, client_secret=f"{ref}_secret")

    def card_attach(self, *, customer_id: str, payment_method_id: str) -> CardInfo:
        return CardInfo(
            provider_ref=payment_method_id, brand="visa", last4="4242", exp_month=12, exp_year=2030
        )

    def card_detach(self, *, payment_method_id: str) -> None:
        return None

    def start_top_up(
        self, *, top_up_id: int, amount: int, currency: str, customer_id: str, payment_method_id: str | None
    ) -> TopUpResult:
        return TopUpResult(provider_ref=f"sandbox_{top_up_id}", succeeded=True)

    def payout_create(
        self, *, withdrawal_id: int, amount: int, currency: str, destination: str
    ) -> PayoutResult:
        return PayoutResult(provider_ref=f"sandbox_po_{withdrawal_id}", paid=True)
