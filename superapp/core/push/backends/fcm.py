"""Firebase Cloud Messaging, HTTP v1 API (Android and web tokens; iOS too for apps using FCM there).

Authentication is Google's OAuth 2.0 service-account flow (RFC 7523): a JWT signed RS256 with
the service account's private key is exchanged at its ``token_uri`` for an access token, cached
until a minute before it expires (one exchange per process and hour however many sends). Then
``POST {FCM_BASE_URL}/v1/projects/{project}/messages:send`` per device.

Errors (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode):
``UNREGISTERED`` (404) and ``SENDER_ID_MISMATCH`` (403) disable the device; ``INVALID_ARGUMENT``
(400) disables it when the error is about the token, and fails this notification otherwise (a
payload bug must not disable every device); ``QUOTA_EXCEEDED`` (429), ``UNAVAILABLE`` (503),
``INTERNAL`` (500) and network errors are retried, honouring ``Retry-After``; a 401 on send
refreshes the access token once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..models import token_hint
from ..notification import DeviceResult, DeviceTarget, Notification
from .base import PushBackend, TransientError, http_client, parse_retry_after

logger = logging.getLogger("superapp.push")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600  # the longest an assertion may ask for
REFRESH_MARGIN = 60


class CredentialsError(Exception):
    """The service account was refused: a configuration problem, not worth retrying soon."""


def load_service_account(path: str) -> dict[str, Any]:
    if not path:
        raise ImproperlyConfigured(
            "FCM_SERVICE_ACCOUNT_FILE is not set (the service account's JSON key file)."
        )
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"FCM_SERVICE_ACCOUNT_FILE cannot be read: {exc}") from exc
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if info.get("type") != "service_account" or missing:
        raise ImproperlyConfigured(
            f"FCM_SERVICE_ACCOUNT_FILE is not a service account key (missing {missing})."
        )
    return info


class FcmV1Backend(PushBackend):
    name = "fcm"

    def __init__(self) -> None:
        info = load_service_account(settings.FCM_SERVICE_ACCOUNT_FILE)
        self.client_email: str = info["client_email"]
        self.private_key_id: str = info.get("private_key_id", "")
        self.token_uri: str = info["token_uri"]
        self.project_id: str = settings.FCM_PROJECT_ID or info.get("project_id", "")
        if not self.project_id:
            raise ImproperlyConfigured(
                "FCM_PROJECT_ID is not set and the service account names no project_id."
            )
        try:
            self._private_key = serialization.load_pem_private_key(
                info["private_key"].encode(), password=None
            )
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured("The FCM service account's private_key cannot be loaded.") from exc
        if not isinstance(self._private_key, rsa.RSAPrivateKey):
            raise ImproperlyConfigured("The FCM service account's private_key is not an RSA key.")
        self.send_url = f"{settings.FCM_BASE_URL.rstrip('/')}/v1/projects/{self.project_id}/messages:send"
        self._client: httpx.Client | None = None
        self._access_token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    # --- OAuth 2.0 ------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        # Created on first use, so that a Celery prefork child opens its own connections.
        if self._client is None:
            self._client = http_client()
        return self._client

    def access_token(self, *, refresh: bool = False, stale: str = "") -> str:
        """A valid access token, exchanged only when the cached one is (nearly) expired.

        ``refresh`` forces a new one unless another thread already replaced ``stale``.
        """
        with self._lock:
            fresh = self._access_token and time.time() < self._expires_at - REFRESH_MARGIN
            if fresh and not (refresh and self._access_token == stale):
                return self._access_token
            self._access_token, self._expires_at = self._exchange()
            return self._access_token

    def _assertion(self, now: int) -> str:
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
        }
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers=headers)

    def _exchange(self) -> tuple[str, float]:
        now = int(time.time())
        try:
            response = self.client.post(
                self.token_uri, data={"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion(now)}
            )
        except httpx.TransportError as exc:
            raise TransientError(f"oauth_{type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"oauth_http_{response.status_code}", parse_retry_after(response.headers.get("retry-after"))
            )
        if response.status_code != 200:
            try:
                error = response.json().get("error", "")
            except ValueError:
                error = ""
            raise CredentialsError(f"oauth_{error or response.status_code}")
        body = response.json()
        return body["access_token"], now + float(body.get("expires_in", TOKEN_LIFETIME))

    # --- sending --------------------------------------------------------------------------

    def send(self, devices, notification: Notification) -> list[DeviceResult]:
        try:
            self.access_token()
        except TransientError as exc:
            logger.warning("fcm: token exchange failed (%s); %d devices will retry", exc.reason, len(devices))
            return [self.result(d, "retry", exc.reason, exc.retry_after) for d in devices]
        except CredentialsError as exc:
            logger.error("fcm: the service account was refused (%s); check FCM_SERVICE_ACCOUNT_FILE", exc)
            return [self.result(d, "failed", str(exc)) for d in devices]
        return super().send(devices, notification)

    def send_one(self, device: DeviceTarget, notification: Notification) -> DeviceResult:
        body = {"message": self.message(device, notification)}
        token = self.access_token()
        try:
            response = self._post(body, token)
            if response.status_code == 401:
                # Revoked or expired before its time: exchange once more and try again.
                response = self._post(body, self.access_token(refresh=True, stale=token))
        except TransientError as exc:
            return self.result(device, "retry", exc.reason, exc.retry_after)
        except CredentialsError as exc:
            return self.result(device, "failed", str(exc))
        return self.classify(device, response)

    def _post(self, body: dict[str, Any], access_token: str) -> httpx.Response:
        try:
            return self.client.post(
                self.send_url, json=body, headers={"authorization": f"Bearer {access_token}"}
            )
        except httpx.TransportError as exc:
            raise TransientError(type(exc).__name__) from None

    def message(self, device: DeviceTarget, n: Notification) -> dict[str, Any]:
        """The v1 ``Message`` for one device (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages)."""
        ttl = settings.PUSH_TTL_SECONDS if n.ttl is None else n.ttl
        notification = {"title": n.title}
        if n.body:
            notification["body"] = n.body
        android: dict[str, Any] = {"priority": "HIGH" if n.priority == "high" else "NORMAL", "ttl": f"{ttl}s"}
        android_notification: dict[str, Any] = {}
        if n.collapse_key:
            android["collapse_key"] = n.collapse_key
            android_notification["tag"] = n.collapse_key  # replaces the shown notification too
        if n.badge is not None:
            android_notification["notification_count"] = n.badge
        if n.sound:
            android_notification["sound"] = n.sound
        if android_notification:
            android["notification"] = android_notification
        aps: dict[str, Any] = {}
        if n.badge is not None:
            aps["badge"] = n.badge
        if n.sound:
            aps["sound"] = n.sound
        apns_headers = {
            "apns-priority": "10" if n.priority == "high" else "5",
            "apns-expiration": str(int(time.time()) + ttl if ttl else 0),
        }
        if n.collapse_key:
            apns_headers["apns-collapse-id"] = n.collapse_key
        message: dict[str, Any] = {
            "token": device.token,
            "notification": notification,
            "data": dict(n.data),
            "android": android,
            "apns": {"headers": apns_headers, "payload": {"aps": aps}},
        }
        if device.platform == "web":
            message["webpush"] = {
                "headers": {"TTL": str(ttl), "Urgency": "high" if n.priority == "high" else "normal"}
            }
        return message

    def classify(self, device: DeviceTarget, response: httpx.Response) -> DeviceResult:
        status = response.status_code
        if status == 200:
            return self.result(device, "sent")
        status_text, error_code, message, token_field = _error_details(response)
        code = error_code or status_text or f"http_{status}"
        if code == "UNREGISTERED" or (status == 404 and not error_code):
            return self._disable(device, "unregistered")
        if code == "SENDER_ID_MISMATCH":
            return self._disable(device, "sender_id_mismatch")
        if code == "INVALID_ARGUMENT" or status == 400:
            if token_field or "registration token" in message.lower():
                return self._disable(device, "invalid_token")
            logger.error("fcm: message refused for device %s: %s %s", device.id, code, message[:200])
            return self.result(device, "failed", "invalid_argument")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            logger.warning("fcm: %s for device %s, will retry (Retry-After %s)", code, device.id, retry_after)
            return self.result(device, "retry", code.lower(), retry_after)
        logger.error("fcm: send failed for device %s: %s (HTTP %s)", device.id, code, status)
        return self.result(device, "failed", code.lower())

    def _disable(self, device: DeviceTarget, reason: str) -> DeviceResult:
        logger.info("fcm: device %s (%s) is no longer valid: %s", device.id, token_hint(device.token), reason)
        return self.result(device, "disabled", reason)


def _error_details(response: httpx.Response) -> tuple[str, str, str, bool]:
    """(status, FcmError errorCode, message, whether a field violation names the token)."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return "", "", "", False
    if not isinstance(error, dict):
        return "", "", "", False
    error_code, token_field = "", False
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type", "").endswith("google.firebase.fcm.v1.FcmError"):
            error_code = str(detail.get("errorCode", ""))
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                token_field = True
    return str(error.get("status", "")), error_code, str(error.get("message", "")), token_field
