"""Apple Push Notification service, the HTTP/2 provider API with token-based authentication.

``POST {APNS_BASE_URL}/3/device/<token>`` over HTTP/2 (TLS), ``authorization: bearer <provider
token>``: a JWT signed ES256 with the team's .p8 key (``kid`` = key id, ``iss`` = team id,
``iat``), reused for ~50 minutes (Apple refuses one older than an hour and one renewed more
often than every 20 minutes). One HTTP/2 connection per process, kept open as Apple asks.

Errors (https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns):
410 ``Unregistered``, 400 ``BadDeviceToken`` and 400 ``DeviceTokenNotForTopic`` disable the
device; 429 and 5xx and network errors are retried (``Retry-After`` honoured if sent); 403
``ExpiredProviderToken`` renews the provider token once; any other error fails the notification.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..models import token_hint
from ..notification import DeviceResult, DeviceTarget, Notification
from .base import PushBackend, TransientError, http_client, parse_retry_after

logger = logging.getLogger("superapp.push")

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
PROVIDER_TOKEN_SECONDS = 50 * 60
HEX_TOKEN = re.compile(r"^[0-9a-fA-F]{16,400}$")
DISABLE_REASONS = {
    "Unregistered": "unregistered",
    "BadDeviceToken": "bad_device_token",
    "DeviceTokenNotForTopic": "token_not_for_topic",
}
REFRESH_REASONS = {"ExpiredProviderToken"}


class ApnsBackend(PushBackend):
    name = "apns"

    def __init__(self) -> None:
        missing = [
            name for name in ("APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID") if not getattr(settings, name)
        ]
        if missing:
            raise ImproperlyConfigured(f"APNs needs {', '.join(missing)}.")
        try:
            with open(settings.APNS_KEY_FILE, "rb") as fh:
                key = serialization.load_pem_private_key(fh.read(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"APNS_KEY_FILE cannot be loaded: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ImproperlyConfigured("APNS_KEY_FILE must hold a P-256 (ES256) private key (the .p8 file).")
        self._key = key
        self.key_id: str = settings.APNS_KEY_ID
        self.team_id: str = settings.APNS_TEAM_ID
        self.topic: str = settings.APNS_TOPIC
        self.base_url = (
            settings.APNS_BASE_URL or (SANDBOX_URL if settings.APNS_USE_SANDBOX else PRODUCTION_URL)
        ).rstrip("/")
        self._ca_file: str = settings.APNS_CA_FILE
        self._client: httpx.Client | None = None
        self._provider_token = ""
        self._issued_at = 0.0
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            verify: Any = ssl.create_default_context(cafile=self._ca_file) if self._ca_file else True
            self._client = http_client(http2=True, verify=verify)
        return self._client

    def provider_token(self, *, refresh: bool = False, stale: str = "") -> str:
        """The ES256 provider token, renewed after ~50 minutes (or when APNs says it expired)."""
        with self._lock:
            fresh = self._provider_token and time.time() < self._issued_at + PROVIDER_TOKEN_SECONDS
            if fresh and not (refresh and self._provider_token == stale):
                return self._provider_token
            now = int(time.time())
            self._provider_token = jwt.encode(
                {"iss": self.team_id, "iat": now}, self._key, algorithm="ES256", headers={"kid": self.key_id}
            )
            self._issued_at = now
            return self._provider_token

    def send_one(self, device: DeviceTarget, notification: Notification) -> DeviceResult:
        if not HEX_TOKEN.match(device.token):
            # It would go into the request path; registration refuses such tokens already.
            return self._disable(device, "bad_device_token")
        topic = device.app_id or self.topic
        if not topic:
            logger.error("apns: no topic for device %s (set APNS_TOPIC or register the bundle id)", device.id)
            return self.result(device, "failed", "no_topic")
        headers = self.headers(topic, notification)
        body = self.payload(notification)
        token = self.provider_token()
        try:
            response = self._post(device, headers, body, token)
            if response.status_code == 403 and _reason(response) in REFRESH_REASONS:
                response = self._post(device, headers, body, self.provider_token(refresh=True, stale=token))
        except TransientError as exc:
            return self.result(device, "retry", exc.reason, exc.retry_after)
        return self.classify(device, response)

    def _post(
        self, device: DeviceTarget, headers: dict[str, str], body: dict[str, Any], token: str
    ) -> httpx.Response:
        try:
            return self.client.post(
                f"{self.base_url}/3/device/{device.token}",
                json=body,
                headers={**headers, "authorization": f"bearer {token}"},
            )
        except httpx.TransportError as exc:
            raise TransientError(type(exc).__name__) from None

    def headers(self, topic: str, n: Notification) -> dict[str, str]:
        ttl = settings.PUSH_TTL_SECONDS if n.ttl is None else n.ttl
        headers = {
            "apns-topic": topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if n.priority == "high" else "5",
            "apns-expiration": str(int(time.time()) + ttl if ttl else 0),
        }
        if n.collapse_key:
            headers["apns-collapse-id"] = n.collapse_key
        return headers

    def payload(self, n: Notification) -> dict[str, Any]:
        alert = {"title": n.title}
        if n.body:
            alert["body"] = n.body
        aps: dict[str, Any] = {"alert": alert}
        if n.badge is not None:
            aps["badge"] = n.badge
        if n.sound:
            aps["sound"] = n.sound
        if n.collapse_key:
            aps["thread-id"] = n.collapse_key  # groups the conversation's notifications
        return {"aps": aps, **n.data}

    def classify(self, device: DeviceTarget, response: httpx.Response) -> DeviceResult:
        status = response.status_code
        if status == 200:
            return self.result(device, "sent")
        reason = _reason(response) or f"http_{status}"
        if reason in DISABLE_REASONS and status in (400, 410):
            return self._disable(device, DISABLE_REASONS[reason])
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            logger.warning(
                "apns: %s for device %s, will retry (Retry-After %s)", reason, device.id, retry_after
            )
            return self.result(device, "retry", reason, retry_after)
        logger.error("apns: send failed for device %s: %s (HTTP %s)", device.id, reason, status)
        return self.result(device, "failed", reason)

    def _disable(self, device: DeviceTarget, reason: str) -> DeviceResult:
        logger.info(
            "apns: device %s (%s) is no longer valid: %s", device.id, token_hint(device.token), reason
        )
        return self.result(device, "disabled", reason)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("reason", "")) if isinstance(body, dict) else ""
