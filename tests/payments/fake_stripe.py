"""A fake Stripe API on 127.0.0.1 for tests: answers the few calls the project makes with the
shapes of Stripe's published fixtures (openapi fixtures3.json), and builds signed webhooks.

Magic payment method ids, as Stripe's test mode has them: ``pm_card_chargeDeclined`` declines,
``pm_missing`` does not exist.

Stripe Identity: VerificationSessions (create, retrieve with ``expand[]=verified_outputs``,
cancel, redact) and VerificationReports (retrieve; ``document.number`` only with
``expand[]=document.number``, as Stripe does). Redacting (refused while ``processing``) cancels a
session waiting for the user, erases its metadata and puts ``"[redacted]"`` in place of the
personal data of the session, its verified outputs and its reports, as Stripe does; the fake
finishes at once (``redaction.status`` ``redacted``; Stripe shows ``processing`` for up to four
days first). ``redact_down`` makes the redact endpoint answer 500 (Stripe down). A test plays the user's side with
:meth:`FakeStripe.identity_verify` / :meth:`FakeStripe.identity_requires_input`, which return the
session as the matching webhook carries it.
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
from urllib.parse import parse_qsl, urlsplit

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
        self.verification_sessions: dict[str, dict] = {}
        self.verification_reports: dict[str, dict] = {}
        self.redact_down = False
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

    # --- Stripe Identity: the user's side ------------------------------------------------------

    def identity_verify(
        self,
        session_id: str,
        *,
        first_name: str = "Jenny",
        last_name: str = "Rosen",
        number: str = "D1234567",
        issuing_country: str = "US",
        document_type: str = "driving_license",
    ) -> dict:
        """The user passed the document check: the session is ``verified`` with a report."""
        session = self.verification_sessions[session_id]
        report_id = _id("vr")
        self.verification_reports[report_id] = {
            "id": report_id,
            "object": "identity.verification_report",
            "client_reference_id": session["client_reference_id"],
            "created": int(time.time()),
            "livemode": False,
            "options": {"document": {}, "id_number": {}},
            "type": "document",
            "verification_session": session_id,
            "document": {
                "address": None,
                "error": None,
                "expiration_date": {"day": 1, "month": 12, "year": 2030},
                "files": [_id("file"), _id("file")],
                "first_name": first_name,
                "last_name": last_name,
                "issued_date": {"day": 1, "month": 12, "year": 2020},
                "issuing_country": issuing_country,
                "status": "verified",
                "type": document_type,
                "_number": number,  # served as "number" only when expanded
            },
        }
        session.update(
            status="verified",
            last_error=None,
            last_verification_report=report_id,
            client_secret=None,
            url=None,
            _verified_outputs={
                "first_name": first_name,
                "last_name": last_name,
                "address": None,
                "dob": None,
                "email": None,
                "phone": None,
                "id_number": None,
                "id_number_type": None,
                "sex": None,
                "unparsed_place_of_birth": None,
                "unparsed_sex": None,
            },
        )
        return _public(session)

    def identity_requires_input(self, session_id: str, *, code: str, reason: str) -> dict:
        """The check failed; the user may try again in the same session."""
        session = self.verification_sessions[session_id]
        session.update(status="requires_input", last_error={"code": code, "reason": reason})
        return _public(session)

    def identity_session(self, session_id: str) -> dict:
        return _public(self.verification_sessions[session_id])

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
        if parts[:3] == ["v1", "identity", "verification_sessions"]:
            return self._verification_sessions(method, parts[3:], params)
        if method == "GET" and len(parts) == 4 and parts[:3] == ["v1", "identity", "verification_reports"]:
            report = self.verification_reports.get(parts[3])
            if report is None:
                return _error(
                    404, "invalid_request_error", "resource_missing", f"No such report: '{parts[3]}'"
                )
            body = _public(report)
            document = dict(report["document"])
            number = document.pop("_number")
            if "document.number" in _expand(params):
                document["number"] = number
            body["document"] = document
            return 200, body
        return _error(
            404, "invalid_request_error", "resource_missing", f"Unrecognized request URL ({method}: {path})"
        )

    def _verification_sessions(
        self, method: str, rest: list[str], params: dict[str, str]
    ) -> tuple[int, dict]:
        if method == "POST" and not rest:
            if params.get("type") != "document":
                return _error(400, "invalid_request_error", "parameter_invalid", "Invalid type.")
            vs = _id("vs")
            session = {
                "id": vs,
                "object": "identity.verification_session",
                "client_reference_id": params.get("client_reference_id"),
                "client_secret": f"{vs}_secret_live_x",
                "created": int(time.time()),
                "last_error": None,
                "last_verification_report": None,
                "livemode": False,
                "metadata": _metadata(params),
                "options": {
                    "document": {
                        "require_matching_selfie": params.get("options[document][require_matching_selfie]")
                        == "true"
                    }
                },
                "redaction": None,
                "related_customer": None,
                "status": "requires_input",
                "type": "document",
                "url": f"https://verify.stripe.com/start/test_{vs}",
                "_verified_outputs": None,
            }
            self.verification_sessions[vs] = session
            return 200, _public(session)
        session = self.verification_sessions.get(rest[0]) if rest else None
        if session is None:
            return _error(404, "invalid_request_error", "resource_missing", "No such verification session.")
        if method == "GET" and len(rest) == 1:
            body = _public(session)
            if "verified_outputs" in _expand(params):
                body["verified_outputs"] = session["_verified_outputs"]
            return 200, body
        if method == "POST" and rest[1:] == ["cancel"]:
            if session["status"] != "requires_input":
                return _error(
                    400,
                    "invalid_request_error",
                    "session_invalid_status",
                    f"You cannot cancel a VerificationSession with status {session['status']}.",
                )
            session.update(status="canceled", client_secret=None, url=None)
            return 200, _public(session)
        if method == "POST" and rest[1:] == ["redact"]:
            return self._redact(session)
        return _error(404, "invalid_request_error", "resource_missing", "Unrecognized request URL.")

    def _redact(self, session: dict) -> tuple[int, dict]:
        if self.redact_down:
            return _error(500, "api_error", "api_error", "Something went wrong on Stripe's end.")
        if session["redaction"] is not None:
            return 200, _public(session)  # redacted already: the session as it is
        if session["status"] == "processing":
            return _error(
                400,
                "invalid_request_error",
                "session_invalid_status",
                "You cannot redact a VerificationSession with status processing.",
            )
        if session["status"] == "requires_input":
            session.update(status="canceled")
        session.update(
            client_secret=None,
            url=None,
            metadata={},
            client_reference_id=_REDACTED if session["client_reference_id"] else None,
            redaction={"status": "redacted"},
            _verified_outputs=_redacted(session["_verified_outputs"]),
        )
        for report in self.verification_reports.values():
            if report["verification_session"] == session["id"]:
                report.update(client_reference_id=_REDACTED, document=_redacted(report["document"]))
        return 200, _public(session)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                params = dict(parse_qsl(self.rfile.read(length).decode())) if length else {}
                params.update(parse_qsl(urlsplit(self.path).query))  # GET's parameters
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


_REDACTED = "[redacted]"


def _redacted(data: dict | None) -> dict | None:
    """Personal data as a redacted object shows it: strings become ``"[redacted]"``, dates and
    file lists empty; the fields' kinds and statuses stay."""
    if data is None:
        return None
    kept = {"status", "type", "issuing_country", "error"}
    out: dict = {}
    for key, value in data.items():
        if key in kept or value is None:
            out[key] = value
        elif isinstance(value, str):
            out[key] = _REDACTED
        elif isinstance(value, list):
            out[key] = []
        else:
            out[key] = None
    return out


def _expand(params: dict[str, str]) -> set[str]:
    """The ``expand[]`` paths of a request (the library sends ``expand[0]=...``)."""
    return {v for k, v in params.items() if k.startswith("expand[")}


def _public(obj: dict) -> dict:
    """An object as the API shows it: without the fake's own ``_`` fields."""
    return {k: v for k, v in obj.items() if not k.startswith("_")} | (
        {"verified_outputs": None} if obj.get("object") == "identity.verification_session" else {}
    )


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
