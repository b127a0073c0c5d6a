"""A fake Google OAuth 2.0 token endpoint and FCM HTTP v1 ``messages:send``, on 127.0.0.1.

It checks what the real ones check: the RS256 signature of the service-account assertion with
the account's public key and its claims; the bearer access token it issued (and their expiry);
the shape of the v1 ``Message``. Violations are answered as Google would and recorded in
``errors`` (a test asserts it stays empty). Answers per device token can be scripted with
:meth:`FakeFcm.answer`: ``"ok"``, ``"unregistered"``, ``"invalid_token"``, ``"invalid_payload"``,
``"sender_id_mismatch"``, ``"quota"`` (429, with ``retry_after``), ``"unavailable"`` (503),
``"internal"`` (500), ``"unauthenticated"`` (401 as for a revoked access token).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .server import ServerThread, headers_of, read_body, respond

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

MESSAGE_KEYS = {
    "name",
    "token",
    "topic",
    "condition",
    "notification",
    "data",
    "android",
    "apns",
    "webpush",
    "fcm_options",
}
NOTIFICATION_KEYS = {"title", "body", "image"}
ANDROID_KEYS = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
}
ANDROID_NOTIFICATION_KEYS = {
    "title",
    "body",
    "icon",
    "color",
    "sound",
    "tag",
    "click_action",
    "body_loc_key",
    "channel_id",
    "ticker",
    "sticky",
    "notification_priority",
    "default_sound",
    "visibility",
    "notification_count",
    "image",
}
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


def _fcm_error(code: int, status: str, message: str, error_code: str | None = None, details=None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    error["details"] = list(details or [])
    if error_code:
        error["details"].append({"@type": FCM_ERROR, "errorCode": error_code})
    return {"error": error}


ANSWERS = {
    "ok": None,
    "unregistered": (404, _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")),
    "invalid_token": (
        400,
        _fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            "INVALID_ARGUMENT",
        ),
    ),
    "invalid_payload": (
        400,
        _fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), Illegal duration format",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": "message.android.ttl", "description": "Illegal duration format"}
                    ],
                }
            ],
        ),
    ),
    "sender_id_mismatch": (
        403,
        _fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
    ),
    "quota": (
        429,
        _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric.", "QUOTA_EXCEEDED"),
    ),
    "unavailable": (
        503,
        _fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
    ),
    "internal": (500, _fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")),
    "unauthenticated": (
        401,
        _fcm_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 "
            "access token, login cookie or other valid authentication credential.",
        ),
    ),
}


class FakeFcm:
    def __init__(self, *, project_id: str = "superapp-test", token_lifetime: int = 3600) -> None:
        self.project_id = project_id
        self.client_email = f"push@{project_id}.iam.gserviceaccount.com"
        self.private_key_id = secrets.token_hex(20)
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.token_lifetime = token_lifetime
        self.server = ServerThread(self)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.oauth_exchanges: list[dict[str, Any]] = []
            self.oauth_answers: deque = deque()
            self.access_tokens: dict[str, float] = {}
            self.sends: list[dict[str, Any]] = []
            self.errors: list[str] = []
            self.scripts: dict[str, deque] = defaultdict(deque)

    # --- test controls --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def service_account_file(self, directory: Path) -> Path:
        """A service-account key file as Google issues it, pointing its token_uri here."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/push",
            "universe_domain": "googleapis.com",
        }
        path = directory / "service-account.json"
        path.write_text(json.dumps(info))
        return path

    def answer(self, device_token: str, *answers: str, retry_after: str | None = None) -> None:
        """Answer the next sends to ``device_token`` so, in order (then "ok")."""
        with self.lock:
            for name in answers:
                assert name in ANSWERS, name
                self.scripts[device_token].append((name, retry_after))

    def answer_oauth(self, *answers: tuple[int, dict, dict]) -> None:
        """Answer the next token exchanges with ``(status, body, headers)``."""
        self.oauth_answers.extend(answers)

    def revoke_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def sent_to(self, device_token: str) -> list[dict[str, Any]]:
        return [s for s in self.sends if s["token"] == device_token]

    def __enter__(self) -> FakeFcm:
        self.server.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.__exit__(*exc_info)

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        headers = headers_of(scope)
        if scope["method"] == "POST" and scope["path"] == "/token":
            await self._token(send, headers, body)
        elif scope["method"] == "POST" and scope["path"] == f"/v1/projects/{self.project_id}/messages:send":
            await self._send(send, headers, body)
        else:
            self.errors.append(f"unexpected request {scope['method']} {scope['path']}")
            await respond(send, 404, _fcm_error(404, "NOT_FOUND", "Not found"))

    async def _token(self, send, headers: dict[str, str], body: bytes) -> None:
        def refuse(description: str):
            self.errors.append(f"oauth: {description}")
            return respond(send, 400, {"error": "invalid_grant", "error_description": description})

        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return await refuse("not a form")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return await refuse("grant_type")
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.private_key.public_key(),
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=self.client_email,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return await refuse(f"Invalid JWT: {exc}")
        if header.get("alg") != "RS256" or header.get("kid") != self.private_key_id:
            return await refuse("header")
        if SCOPE not in claims["scope"].split():
            return await refuse("scope")
        if claims["exp"] - claims["iat"] > 3600 or abs(claims["iat"] - time.time()) > 300:
            return await refuse(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
            )
        with self.lock:
            self.oauth_exchanges.append({"at": time.time(), "claims": claims})
            if self.oauth_answers:
                status, answer, extra = self.oauth_answers.popleft()
                return await respond(send, status, answer, extra)
            token = "ya29." + secrets.token_urlsafe(32)
            self.access_tokens[token] = time.time() + self.token_lifetime
        await respond(
            send, 200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    async def _send(self, send, headers: dict[str, str], body: bytes) -> None:
        authorization = headers.get("authorization", "")
        bearer = authorization[7:] if authorization.startswith("Bearer ") else ""
        with self.lock:
            valid = self.access_tokens.get(bearer, 0) > time.time()
        if not valid:
            return await respond(send, *ANSWERS["unauthenticated"])
        if not headers.get("content-type", "").startswith("application/json"):
            self.errors.append("send: content-type")
            return await respond(
                send, 400, _fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            )
        try:
            payload = json.loads(body)
            message = payload["message"]
            problems = _check_message(payload)
        except (ValueError, KeyError, TypeError) as exc:
            problems = [f"unreadable: {exc!r}"]
            message = {}
        if problems:
            self.errors.extend(problems)
            return await respond(
                send,
                400,
                _fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. " + "; ".join(problems)),
            )
        device_token = message["token"]
        with self.lock:
            script = self.scripts.get(device_token)
            name, retry_after = script.popleft() if script else ("ok", None)
            self.sends.append(
                {
                    "token": device_token,
                    "message": message,
                    "at": time.time(),
                    "answer": name,
                    "bearer": bearer,
                }
            )
        if name == "ok":
            return await respond(
                send, 200, {"name": f"projects/{self.project_id}/messages/{secrets.token_hex(8)}"}
            )
        status, answer = ANSWERS[name]
        await respond(send, status, answer, {"retry-after": retry_after} if retry_after else None)


def _check_message(payload: dict[str, Any]) -> list[str]:
    """What Google would refuse in a v1 send request (the part of the schema we use)."""
    problems: list[str] = []
    if set(payload) - {"message", "validate_only"}:
        problems.append(f"unknown request fields {set(payload) - {'message', 'validate_only'}}")
    message = payload["message"]
    if not isinstance(message, dict) or set(message) - MESSAGE_KEYS:
        return [*problems, f"unknown message fields {set(message) - MESSAGE_KEYS}"]
    if not isinstance(message.get("token"), str) or not message["token"]:
        problems.append("message.token")
    notification = message.get("notification", {})
    if set(notification) - NOTIFICATION_KEYS or not all(isinstance(v, str) for v in notification.values()):
        problems.append("message.notification")
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        problems.append("message.data must map strings to strings")
    android = message.get("android", {})
    if set(android) - ANDROID_KEYS:
        problems.append(f"unknown android fields {set(android) - ANDROID_KEYS}")
    if "priority" in android and android["priority"] not in ("NORMAL", "HIGH"):
        problems.append("message.android.priority")
    if "ttl" in android and not DURATION.match(str(android["ttl"])):
        problems.append("message.android.ttl")
    if "collapse_key" in android and not isinstance(android["collapse_key"], str):
        problems.append("message.android.collapse_key")
    android_notification = android.get("notification", {})
    if set(android_notification) - ANDROID_NOTIFICATION_KEYS:
        problems.append("message.android.notification")
    if "notification_count" in android_notification and not isinstance(
        android_notification["notification_count"], int
    ):
        problems.append("message.android.notification.notification_count")
    apns = message.get("apns", {})
    if set(apns) - {"headers", "payload", "fcm_options", "live_activity_token"}:
        problems.append("message.apns")
    if not all(isinstance(v, str) for v in apns.get("headers", {}).values()):
        problems.append("message.apns.headers must map strings to strings")
    if "payload" in apns and not isinstance(apns["payload"].get("aps"), dict):
        problems.append("message.apns.payload.aps")
    webpush = message.get("webpush", {})
    if set(webpush) - {"headers", "data", "notification", "fcm_options"}:
        problems.append("message.webpush")
    if not all(isinstance(v, str) for v in webpush.get("headers", {}).values()):
        problems.append("message.webpush.headers")
    if len(json.dumps(message).encode()) > 4096:
        problems.append("message too big")
    return problems
