"""What is pushed (:class:`Notification`) and what came of it (:class:`DeviceResult`, :class:`DeliverySummary`).

Plain data, no Django models: these cross the Celery boundary as dicts (``to_dict`` /
``from_dict``) and are what backends receive and return.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TITLE_MAX_CHARS = 100
BODY_MAX_CHARS = 1000
DATA_MAX_BYTES = 2048  # FCM and APNs both cap the whole payload at 4 KB
COLLAPSE_KEY_MAX_BYTES = 64  # apns-collapse-id's limit; FCM allows more
TTL_MAX_SECONDS = 28 * 24 * 3600  # FCM's maximum

# Keys FCM reserves in ``data`` (and "aps", which would clash with the APNs payload).
_RESERVED_DATA_KEYS = {"from", "notification", "message_type", "aps"}
_RESERVED_DATA_PREFIXES = ("google", "gcm")

Status = Literal["sent", "disabled", "retry", "failed", "skipped"]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Notification:
    """A notification as the user will see it, the same for every platform.

    Args:
        title: the bold line (truncated to 100 characters).
        body: the text under it (truncated to 1000). Put message text here only when the
            recipient's "show preview" setting allows it.
        data: string keys and string values delivered to the app (FCM's ``data``; custom keys
            of the APNs payload). At most 2 KB as JSON.
        collapse_key: a newer notification with the same key replaces an older one still
            waiting or shown (FCM ``collapse_key``, APNs ``apns-collapse-id``; at most 64 bytes).
        badge: the app icon's badge number (iOS; Android launchers that support it), or None
            to leave it alone.
        sound: the sound to play ("default"), or None for a silent alert.
        priority: "high" wakes the device now; "normal" may be delayed to save battery.
        ttl: seconds the push service keeps trying to deliver (0: now or never); None uses
            ``PUSH_TTL_SECONDS``.
    """

    title: str
    body: str = ""
    data: Mapping[str, str] = field(default_factory=dict)
    collapse_key: str = ""
    badge: int | None = None
    sound: str | None = "default"
    priority: Literal["high", "normal"] = "high"
    ttl: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not isinstance(self.body, str):
            raise TypeError("Notification title and body must be strings.")
        if not self.title and not self.body:
            raise ValueError("A notification needs a title or a body.")
        object.__setattr__(self, "title", _truncate(self.title, TITLE_MAX_CHARS))
        object.__setattr__(self, "body", _truncate(self.body, BODY_MAX_CHARS))
        data = dict(self.data)
        for key, value in data.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"Notification data must map strings to strings (key {key!r}).")
            if key in _RESERVED_DATA_KEYS or key.lower().startswith(_RESERVED_DATA_PREFIXES):
                raise ValueError(f"Notification data key {key!r} is reserved by the push services.")
        if len(json.dumps(data, ensure_ascii=False).encode()) > DATA_MAX_BYTES:
            raise ValueError(f"Notification data is larger than {DATA_MAX_BYTES} bytes.")
        object.__setattr__(self, "data", data)
        if len(self.collapse_key.encode()) > COLLAPSE_KEY_MAX_BYTES:
            raise ValueError(f"collapse_key is longer than {COLLAPSE_KEY_MAX_BYTES} bytes.")
        if self.badge is not None and (
            isinstance(self.badge, bool) or not isinstance(self.badge, int) or self.badge < 0
        ):
            raise ValueError("badge must be a non-negative integer or None.")
        if self.priority not in ("high", "normal"):
            raise ValueError("priority must be 'high' or 'normal'.")
        if self.ttl is not None and not (0 <= self.ttl <= TTL_MAX_SECONDS):
            raise ValueError(f"ttl must be between 0 and {TTL_MAX_SECONDS} seconds.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for a Celery task's arguments."""
        out = asdict(self)
        out["data"] = dict(self.data)
        return out

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Notification:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in value.items() if k in known})


@dataclass(frozen=True)
class DeviceTarget:
    """A device as a backend sees it (read from ``PushDevice``; no model instance)."""

    id: int
    user_id: int
    platform: str
    token: str
    app_id: str = ""
    locale: str = ""


@dataclass(frozen=True)
class DeviceResult:
    """What happened to one device's notification.

    ``status``: ``sent`` (accepted by the push service), ``disabled`` (the service says the
    token is dead: the device was disabled), ``retry`` (a transient failure: a retry is
    scheduled unless attempts ran out), ``failed`` (permanent for this notification, e.g. a
    payload or credential problem; logged), ``skipped`` (no backend for the platform).
    """

    device_id: int
    user_id: int
    platform: str
    backend: str
    status: Status
    reason: str = ""
    retry_after: float | None = None  # seconds the service asked us to wait (Retry-After)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeliverySummary:
    """The outcome of one :func:`notify_users` call, per device and counted."""

    results: list[DeviceResult] = field(default_factory=list)
    attempt: int = 1
    retry_scheduled_in: float | None = None  # seconds until the retry of the ``retry`` devices

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def retry_device_ids(self) -> list[int]:
        return [r.device_id for r in self.results if r.status == "retry"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "devices": len(self.results),
            **{status: self.count(status) for status in ("sent", "disabled", "retry", "failed", "skipped")},
            "retry_scheduled_in": self.retry_scheduled_in,
            "results": [r.as_dict() for r in self.results],
        }
