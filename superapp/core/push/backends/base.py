"""The backend interface and helpers shared by the push service adapters."""

from __future__ import annotations

import abc
import email.utils
import time
from collections.abc import Sequence

import httpx
from django.conf import settings

from ..notification import DeviceResult, DeviceTarget, Notification


class PushBackend(abc.ABC):
    """Delivers one notification to some devices of one kind.

    Subclasses implement :meth:`send_one`; :meth:`send` may be overridden to share work across
    devices. A backend instance lives for the whole process (it caches credentials and keeps
    connections open) and is used from one thread at a time per call, possibly several threads.
    Backends never raise for a device's failure: they return a :class:`DeviceResult`. They never
    log a device token in full (use ``superapp.core.push.models.token_hint``).
    """

    name = "base"

    def send(self, devices: Sequence[DeviceTarget], notification: Notification) -> list[DeviceResult]:
        return [self.send_one(device, notification) for device in devices]

    @abc.abstractmethod
    def send_one(self, device: DeviceTarget, notification: Notification) -> DeviceResult:
        """Deliver to one device (each backend implements it)."""

    def close(self) -> None:
        """Release connections (the instance is being replaced)."""
        client = getattr(self, "_client", None)
        if client is not None:
            self._client = None
            client.close()

    def result(
        self, device: DeviceTarget, status, reason: str = "", retry_after: float | None = None
    ) -> DeviceResult:
        return DeviceResult(
            device_id=device.id,
            user_id=device.user_id,
            platform=device.platform,
            backend=self.name,
            status=status,
            reason=reason,
            retry_after=retry_after,
        )


class TransientError(Exception):
    """A failure worth retrying later (network error, 429, 5xx)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def http_client(*, http2: bool = True, verify=True) -> httpx.Client:
    """An HTTP client for a push service: HTTP/2 where the server offers it, bounded timeouts."""
    timeout = float(settings.PUSH_HTTP_TIMEOUT)
    return httpx.Client(
        http2=http2,
        verify=verify,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        follow_redirects=False,
        headers={"user-agent": "superapp-push/1"},
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
