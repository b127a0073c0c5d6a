"""A fake Stripe API on 127.0.0.1 for tests: answers the few calls the project makes with the
shapes of Stripe's published fixtures (openapi fixtures3.json), and builds signed webhooks.

Magic payment method ids, as Stripe's test mode has them: ``pm_card_chargeDeclined`` declines,
``pm_missing`` does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

WEBHOOK_SECRET = "whsec_test_fake"
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):06d}"


def _error(status: int, type_: str, code: str, message: str) -> tuple[int, dict]:
    return status, {"error": {"type": type_, "code": code, "message": message}}


class FakeStripe:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.payment_intents: dict[str, dict] = {}
        self.payouts: dict[str, dict] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeStripe:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- webhooks ----------------------------------------------------------------------------

    def event(
        self,
        type_: str,
        obj: dict,
        *,
        event_id: str | None = None,
        secret: str = WEBHOOK_SECRET,
        timestamp: int | None = None,
    ) -> tuple[bytes, str]:
        """A webhook body and its ``Stripe-Signature`` header, as Stripe would send them."""
        body = json.dumps(
            {
                "id": event_id or _id("evt"),
                "object": "event",
                "api_version": "2025-01-27.acacia",
                "created": int(time.time()),
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": type_,
                "data": {"object": obj},
            }
        ).encode()
        t = timestamp or int(time.time())
        signature = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return body, f"t={t},v1={signature}"

    # --- API -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "customers"]:
            return 200, {
                "id": _id("cus"),
                "object": "customer",
                "balance": 0,
                "created": int(time.time()),
                "currency": None,
                "email": None,
                "livemode": False,
                "metadata": _metadata(params),
                "invoice_settings": {"default_payment_method": None},
            }
        if method == "POST" and parts == ["v1", "setup_intents"]:
            seti = _id("seti")
            return 200, {
                "id": seti,
                "object": "setup_intent",
                "client_secret": f"{seti}_secret_x",
                "customer": params.get("customer"),
                "status": "requires_payment_method",
                "usage": params.get("usage", "off_session"),
                "payment_method": None,
                "payment_method_types": ["card"],
                "livemode": False,
                "metadata": {},
            }
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "payment_methods"]:
            pm, action = parts[2], parts[3]
            if pm == "pm_missing":
                return _error(
                    404, "invalid_request_error", "resource_missing", f"No such PaymentMethod: '{pm}'"
                )
            customer = params.get("customer") if action == "attach" else None
            return 200, _payment_method(pm, customer)
        if method == "POST" and parts == ["v1", "payment_intents"]:
            if params.get("payment_method") == "pm_card_chargeDeclined":
                return _error(402, "card_error", "card_declined", "Your card was declined.")
            amount = int(params["amount"])
            intent = {
                "id": _id("pi"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": params["currency"],
                "customer": params.get("customer"),
                "payment_method": params.get("payment_method"),
                "status": "succeeded",
                "client_secret": "pi_secret",
                "capture_method": "automatic",
                "livemode": False,
                "created": int(time.time()),
                "metadata": _metadata(params),
            }
            self.payment_intents[intent["id"]] = intent
            return 200, intent
        if method == "POST" and parts == ["v1", "payouts"]:
            destination = params.get("destination")
            if destination == "ba_invalid":
                return _error(400, "invalid_request_error", "resource_missing", "No such external account.")
            if destination == "ba_down":
                return _error(500, "api_error", "api_error", "Something went wrong on Stripe's end.")
            payout = {
                "id": _id("po"),
                "object": "payout",
                "amount": int(params["amount"]),
                "currency": params["currency"],
                "destination": destination,
                "status": "pending",
                "method": "standard",
                "type": "bank_account",
                "livemode": False,
                "automatic": False,
                "arrival_date": int(time.time()) + 86400,
                "created": int(time.time()),
                "failure_code": None,
                "failure_message": None,
                "metadata": _metadata(params),
            }
            self.payouts[payout["id"]] = payout
            return 200, payout
        return _error(
            404, "invalid_request_error", "resource_missing", f"Unrecognized request URL ({method}: {path})"
        )

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                params = dict(parse_qsl(self.rfile.read(length).decode())) if length else {}
                fake.requests.append(
                    {
                        "method": method,
                        "path": self.path,
                        "params": params,
                        "idempotency_key": self.headers.get("Idempotency-Key"),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                status, body = fake._route(method, self.path.split("?")[0], params)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Request-Id", _id("req"))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):
                self._answer("POST")

            def do_GET(self):
                self._answer("GET")

            def do_DELETE(self):
                self._answer("DELETE")

            def log_message(self, *args):
                pass

        return Handler


def _metadata(params: dict[str, str]) -> dict[str, str]:
    return {k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")}


def _payment_method(pm: str, customer: str | None) -> dict:
    return {
        "id": pm,
        "object": "payment_method",
        "type": "card",
        "customer": customer,
        "livemode": False,
        "created": int(time.time()),
        "metadata": {},
        "allow_redisplay": "unspecified",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "card": {
            "brand": "visa",
            "country": "US",
            "display_brand": "visa",
            "exp_month": 8,
            "exp_year": 2030,
            "fingerprint": "AOB934RVNwzk6xtn",
            "funding": "credit",
            "last4": "4242",
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
        },
    }
