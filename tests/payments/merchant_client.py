"""A merchant's server as the tests play it: signs each request of the orders API and checks
the signature of each answer (what a real integration does with ``payments.signing``)."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.test import APIClient

from payments import merchants, signing

from .conftest import PIN, fund, with_pin

IDEM = "HTTP_IDEMPOTENCY_KEY"


class MerchantClient:
    def __init__(self, issued: merchants.IssuedKey) -> None:
        self.merchant = issued.merchant
        self.key_id = issued.key.key_id
        self.secret = issued.secret
        self.client = APIClient()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        sign_body: bytes | None = None,
        sign_path: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
        secret: str | None = None,
        key_id: str | None = None,
        authorization: str | None = None,
    ):
        if raw is None:
            raw = json.dumps(body).encode() if body is not None else b""
        if authorization is None:
            authorization = signing.authorization_header(
                key_id=key_id or self.key_id,
                secret=secret or self.secret,
                method=method,
                path=sign_path or path,
                body=raw if sign_body is None else sign_body,
                timestamp=timestamp,
                nonce=nonce,
            )
        return self.client.generic(
            method, path, raw, content_type="application/json", HTTP_AUTHORIZATION=authorization
        )

    def post(self, path: str, body: Any = None, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def verified(self, response) -> bool:
        """The answer's signature checks out with our secret."""
        return signing.response_signature_valid(
            secret=self.secret, headers=dict(response.headers), body=response.content
        )

    # the calls a merchant makes

    def create_order(self, out_trade_no: str = "order-0001", amount: int = 1_000, **extra):
        body = {"out_trade_no": out_trade_no, "amount": amount, "description": "2 coffees", **extra}
        return self.post("/api/v1/pay/orders", body)

    def micropay(self, auth_code: str, out_trade_no: str = "scan-0001", amount: int = 500, **extra):
        body = {
            "out_trade_no": out_trade_no,
            "amount": amount,
            "auth_code": auth_code,
            "description": "bread",
            **extra,
        }
        return self.post("/api/v1/pay/orders/micropay", body)

    def refund(self, out_refund_no: str, amount: int, out_trade_no: str = "order-0001", **extra):
        body = {"out_refund_no": out_refund_no, "out_trade_no": out_trade_no, "amount": amount, **extra}
        return self.post("/api/v1/pay/refunds", body)

    def query(self, out_trade_no: str = "order-0001"):
        return self.get(f"/api/v1/pay/orders/out-trade-no/{out_trade_no}")


def open_merchant(owner, name: str = "Corner Cafe", **extra) -> MerchantClient:
    return MerchantClient(merchants.merchant_create(owner_id=owner.pk, name=name, **extra))


def pay(client, code: str, key: str = "pay-1", pin: str = PIN, **extra):
    """The payer's app pays an order (dynamic QR or a payment code waiting for the PIN)."""
    return client.post(
        f"/api/v1/payments/checkout/orders/{code}/pay", {"pin": pin, **extra}, format="json", **{IDEM: key}
    )


def funded_payer(user, amount: int = 10_000):
    with_pin(user)
    fund(user, amount)
    return user
