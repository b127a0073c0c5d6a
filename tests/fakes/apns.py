"""A fake APNs provider API: HTTP/2 over TLS on 127.0.0.1 (hypercorn), token-based auth.

It checks what Apple checks: HTTP/2; ``POST /3/device/<hex token>``; ``authorization: bearer
<ES256 JWT>`` verified with the key's public half, ``kid`` = key id, ``iss`` = team id, ``iat``
younger than an hour; ``apns-topic``, ``apns-push-type``, ``apns-priority``, ``apns-expiration``,
``apns-collapse-id`` (at most 64 bytes); a JSON body with an ``aps`` dictionary, at most 4 KB.
Violations are answered as Apple would and recorded in ``errors``. Answers per device token can
be scripted with :meth:`FakeApns.answer`: ``"ok"``, ``"unregistered"`` (410), ``"bad_device_token"``
(400), ``"not_for_topic"`` (400), ``"too_many"`` (429), ``"internal"`` (500), ``"unavailable"``
(503), ``"expired_provider_token"`` (403).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .server import ServerThread, headers_of, read_body, respond
from .tls import make_tls

ANSWERS = {
    "ok": (200, None),
    "unregistered": (410, "Unregistered"),
    "bad_device_token": (400, "BadDeviceToken"),
    "not_for_topic": (400, "DeviceTokenNotForTopic"),
    "too_many": (429, "TooManyRequests"),
    "internal": (500, "InternalServerError"),
    "unavailable": (503, "ServiceUnavailable"),
    "expired_provider_token": (403, "ExpiredProviderToken"),
}
PATH = re.compile(r"^/3/device/([0-9a-f]+)$")


class FakeApns:
    def __init__(
        self,
        directory: Path,
        *,
        team_id: str = "TEAM123456",
        key_id: str = "KEY1234567",
        topic: str = "com.example.superapp",
    ) -> None:
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.tls = make_tls(directory / "tls")
        self.server = ServerThread(self, tls=self.tls)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests: list[dict[str, Any]] = []
            self.errors: list[str] = []
            self.scripts: dict[str, deque] = defaultdict(deque)
            self.provider_tokens: list[str] = []  # distinct, in order of first use
            self.connections: set = set()
            self.expired: set[str] = set()

    @property
    def url(self) -> str:
        return self.server.url

    def key_file(self, directory: Path) -> Path:
        """The team's signing key as Apple hands it out (an AuthKey_<kid>.p8 PKCS#8 PEM)."""
        path = directory / f"AuthKey_{self.key_id}.p8"
        path.write_bytes(
            self.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    def answer(self, device_token: str, *answers: str, retry_after: str | None = None) -> None:
        with self.lock:
            for name in answers:
                assert name in ANSWERS, name
                self.scripts[device_token.lower()].append((name, retry_after))

    def expire_provider_tokens(self) -> None:
        """Refuse the provider tokens seen so far with ExpiredProviderToken (as after an hour)."""
        with self.lock:
            self.expired.update(self.provider_tokens)

    def sent_to(self, device_token: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["token"] == device_token.lower()]

    def __enter__(self) -> FakeApns:
        self.server.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.__exit__(*exc_info)

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        headers = headers_of(scope)
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()

        async def refuse(status: int, reason: str, *, expected: bool = False):
            if not expected:
                self.errors.append(reason)
            await respond(send, status, {"reason": reason}, {"apns-id": apns_id})

        with self.lock:
            self.connections.add(tuple(scope.get("client") or ()))
        if scope["http_version"] != "2":
            # Apple speaks HTTP/2 only; an HTTP/1.1 client gets nothing useful.
            return await refuse(400, f"HTTP/{scope['http_version']} instead of HTTP/2")
        if scope["method"] != "POST":
            return await refuse(405, "MethodNotAllowed")
        match = PATH.match(scope["path"])
        if not match:
            return await refuse(404, "BadPath")
        device_token = match.group(1)

        # Provider token.
        authorization = headers.get("authorization", "")
        if not authorization.startswith("bearer "):
            return await refuse(403, "MissingProviderToken")
        provider_token = authorization[7:]
        try:
            header = jwt.get_unverified_header(provider_token)
            claims = jwt.decode(
                provider_token,
                self.private_key.public_key(),
                algorithms=["ES256"],
                options={"require": ["iss", "iat"]},
            )
        except jwt.PyJWTError as exc:
            return await refuse(403, f"InvalidProviderToken: {exc}")
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            return await refuse(403, "InvalidProviderToken")
        if claims["iat"] < time.time() - 3600 or provider_token in self.expired:
            return await refuse(403, "ExpiredProviderToken", expected=True)
        with self.lock:
            if provider_token not in self.provider_tokens:
                self.provider_tokens.append(provider_token)

        # Headers.
        if headers.get("apns-topic") != self.topic:
            return await refuse(400, "TopicDisallowed" if headers.get("apns-topic") else "MissingTopic")
        if headers.get("apns-push-type") not in ("alert", "background"):
            return await refuse(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return await refuse(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return await refuse(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return await refuse(400, "BadCollapseId")

        # Body.
        if len(body) > 4096:
            return await refuse(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
        except ValueError:
            return await refuse(400, "BadPayload")
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return await refuse(400, "PayloadEmpty")
        alert = payload["aps"].get("alert")
        if headers.get("apns-push-type") == "alert" and not isinstance(alert, dict | str):
            return await refuse(400, "BadPayload: alert push without an alert")

        with self.lock:
            script = self.scripts.get(device_token)
            name, retry_after = script.popleft() if script else ("ok", None)
            self.requests.append(
                {
                    "token": device_token,
                    "headers": headers,
                    "payload": payload,
                    "at": time.time(),
                    "answer": name,
                    "provider_token": provider_token,
                }
            )
        status, reason = ANSWERS[name]
        extra = {"apns-id": apns_id}
        if retry_after:
            extra["retry-after"] = retry_after
        if status == 200:
            return await respond(send, 200, None, extra)
        answer: dict[str, Any] = {"reason": reason}
        if status == 410:
            answer["timestamp"] = int(time.time() * 1000)
        await respond(send, status, answer, extra)
