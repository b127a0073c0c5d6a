"""Writes: device registration, disabling, and delivery of notifications to users' devices."""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from prometheus_client import Counter

from ..errors import NotFound, ValidationFailed
from . import backends, selectors
from .models import PushDevice
from .notification import DeliverySummary, DeviceResult, DeviceTarget, Notification

logger = logging.getLogger("superapp.push")

push_results = Counter(
    "superapp_push_results_total", "Push notifications per device, by outcome", ["backend", "status"]
)

# APNs tokens are hex (their length may change); FCM registration tokens are URL-safe base64
# with ':' separators. Both end up in URLs or JSON, so nothing else is accepted.
_TOKEN_PATTERNS = {
    "ios": re.compile(r"^[0-9a-fA-F]{16,400}$"),
    "android": re.compile(r"^[A-Za-z0-9_:\-.]{16,1024}$"),
    "web": re.compile(r"^[A-Za-z0-9_:\-.]{16,1024}$"),
}


# --- devices ---------------------------------------------------------------------------------


def device_register(
    *,
    user,
    platform: str,
    token: str,
    session_id: uuid.UUID | None = None,
    app_id: str = "",
    locale: str = "",
) -> tuple[PushDevice, bool]:
    """Register (or refresh) the push token of the caller's app install; idempotent.

    Upserts by ``(platform, token)``: a token already known is reassigned to ``user`` and
    ``session_id`` (someone else signed in on that phone, or a new login) and enabled again.
    Beyond ``PUSH_DEVICES_PER_USER_MAX`` active devices, the least recently seen ones are
    disabled (reinstalls leave dead tokens behind that the push services may not report soon).

    Returns:
        The device and whether it was created.

    Raises:
        ValidationFailed: unknown platform or malformed token.
    """
    pattern = _TOKEN_PATTERNS.get(platform)
    if pattern is None:
        raise ValidationFailed(fields={"platform": [str(_("Unknown platform."))]})
    if platform == "ios":
        token = token.lower()
    if not pattern.match(token):
        raise ValidationFailed(fields={"token": [str(_("This is not a push token of that platform."))]})
    now = timezone.now()
    with transaction.atomic():
        device, created = PushDevice.objects.update_or_create(
            platform=platform,
            token=token,
            defaults={
                "user_id": user.pk,
                "session_id": session_id,
                "app_id": app_id,
                "locale": locale,
                "last_seen_at": now,
                "disabled_at": None,
                "disabled_reason": "",
            },
        )
        extra = list(
            PushDevice.objects.filter(user_id=user.pk, disabled_at__isnull=True)
            .exclude(id=device.id)
            .order_by("-last_seen_at", "-id")
            .values_list("id", flat=True)[settings.PUSH_DEVICES_PER_USER_MAX - 1 :]
        )
        if extra:
            PushDevice.objects.filter(id__in=extra, disabled_at__isnull=True).update(
                disabled_at=now, disabled_reason="too_many_devices"
            )
    return device, created


def device_delete(*, user, device_id: int) -> None:
    """Forget one of the caller's devices (the app unregisters: logout, notifications off).

    Raises:
        NotFound: no such device of this user (another user's device is not found either).
    """
    deleted, _counts = PushDevice.objects.filter(id=device_id, user_id=user.pk).delete()
    if not deleted:
        raise NotFound()


def devices_disable(*, device_ids: Iterable[int], reason: str, seen_before: datetime | None = None) -> int:
    """Disable devices (the push service said their token is dead); returns how many.

    ``seen_before``: leave alone a device registered again since then (the token may have come
    back to life between our send and this write).
    """
    queryset = PushDevice.objects.filter(id__in=list(device_ids), disabled_at__isnull=True)
    if seen_before is not None:
        queryset = queryset.filter(last_seen_at__lt=seen_before)
    return queryset.update(disabled_at=timezone.now(), disabled_reason=reason[:32])


def devices_disable_for_session(*, session_id: uuid.UUID | str) -> int:
    """Disable the devices registered from a login session (call it when the session is revoked).

    Safe inside the caller's transaction; returns how many devices were disabled.
    """
    return PushDevice.objects.filter(session_id=session_id, disabled_at__isnull=True).update(
        disabled_at=timezone.now(), disabled_reason="session_revoked"
    )


def devices_purge_disabled(*, days: int) -> int:
    """Delete devices disabled more than ``days`` ago; returns how many."""
    deleted, _counts = PushDevice.objects.filter(
        disabled_at__lt=timezone.now() - timedelta(days=days)
    ).delete()
    return deleted


# --- delivery ---------------------------------------------------------------------------------


def notify_users(
    *,
    user_ids: Iterable[int],
    notification: Notification,
    device_ids: Sequence[int] | None = None,
    attempt: int = 1,
) -> DeliverySummary:
    """Push ``notification`` to every active device of ``user_ids``, now, through the configured backends.

    Call it from a Celery task, outside any transaction: it makes one HTTP request per device.
    Devices whose token the push service reports dead are disabled. Devices that met a
    transient failure (429, 5xx, network) are retried by the task ``core.push_deliver``, later
    (``Retry-After`` when the service gave one, else exponential backoff), at most
    ``PUSH_MAX_ATTEMPTS`` attempts in all. Delivery is at least once: a retried or redelivered
    task may push a notification twice, which the push services and the apps tolerate
    (``collapse_key`` replaces the earlier copy).

    Args:
        user_ids: the recipients.
        notification: what to show.
        device_ids: only these devices (used by retries).
        attempt: 1 for the first attempt (used by retries).

    Returns:
        One :class:`DeviceResult` per device, counted (``summary.as_dict()`` for logs).
    """
    started_at = timezone.now()
    devices = selectors.devices_for_delivery(user_ids=user_ids, device_ids=device_ids)
    summary = DeliverySummary(results=_send(devices, notification), attempt=attempt)

    dead: dict[str, list[int]] = defaultdict(list)
    for result in summary.results:
        push_results.labels(backend=result.backend, status=result.status).inc()
        if result.status == "disabled":
            dead[result.reason].append(result.device_id)
    for reason, ids in dead.items():
        devices_disable(device_ids=ids, reason=reason, seen_before=started_at)

    retry_ids = summary.retry_device_ids
    if retry_ids:
        if attempt < settings.PUSH_MAX_ATTEMPTS:
            summary.retry_scheduled_in = retry_delay(
                attempt=attempt, retry_after=[r.retry_after for r in summary.results if r.status == "retry"]
            )
            _schedule_retry(
                user_ids=sorted({r.user_id for r in summary.results if r.status == "retry"}),
                notification=notification,
                device_ids=retry_ids,
                attempt=attempt + 1,
                countdown=summary.retry_scheduled_in,
            )
        else:
            logger.warning("push: giving up on %d devices after %d attempts", len(retry_ids), attempt)
    return summary


def notify_users_later(*, user_ids: Iterable[int], notification: Notification) -> None:
    """Deliver from the Celery task ``core.push_deliver`` once the current transaction commits.

    Outside a transaction the task is sent at once. A rolled-back transaction sends nothing.
    """
    from .tasks import push_deliver

    ids = sorted(set(user_ids))
    payload = notification.to_dict()
    transaction.on_commit(lambda: push_deliver.delay(user_ids=ids, notification=payload))


def retry_delay(*, attempt: int, retry_after: Sequence[float | None] = ()) -> float:
    """Seconds before retry ``attempt + 1``: the longest ``Retry-After`` given, else backoff with jitter."""
    asked = [value for value in retry_after if value is not None]
    if asked:
        return min(max(asked), float(settings.PUSH_RETRY_BACKOFF_MAX))
    base = min(settings.PUSH_RETRY_BACKOFF * 2 ** (attempt - 1), settings.PUSH_RETRY_BACKOFF_MAX)
    return round(base * random.uniform(0.8, 1.2), 3)


def _send(devices: list[DeviceTarget], notification: Notification) -> list[DeviceResult]:
    by_platform: dict[str, list[DeviceTarget]] = defaultdict(list)
    for device in devices:
        by_platform[device.platform].append(device)
    results: list[DeviceResult] = []
    for platform, targets in by_platform.items():
        try:
            backend = backends.backend_for(platform)
        except Exception:
            logger.exception("push: the %s backend cannot be set up", platform)
            results += [
                DeviceResult(d.id, d.user_id, platform, "?", "failed", "backend_unavailable") for d in targets
            ]
            continue
        if backend is None:
            results += [
                DeviceResult(d.id, d.user_id, platform, "none", "skipped", "no_backend") for d in targets
            ]
            continue
        try:
            results += backend.send(targets, notification)
        except Exception:
            # A bug in a backend must not lose the other platforms' deliveries.
            logger.exception("push: the %s backend failed", backend.name)
            done = {r.device_id for r in results}
            results += [
                DeviceResult(d.id, d.user_id, platform, backend.name, "failed", "backend_error")
                for d in targets
                if d.id not in done
            ]
    return results


def _schedule_retry(
    *, user_ids, notification: Notification, device_ids, attempt: int, countdown: float
) -> None:
    from .tasks import push_deliver

    kwargs = {
        "user_ids": user_ids,
        "notification": notification.to_dict(),
        "device_ids": device_ids,
        "attempt": attempt,
    }
    transaction.on_commit(lambda: push_deliver.apply_async(kwargs=kwargs, countdown=countdown))
