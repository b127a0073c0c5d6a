"""Push delivery task (thin: it calls ``services.notify_users``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from . import services
from .notification import Notification


@shared_task(name="core.push_deliver")
def push_deliver(
    user_ids: list[int], notification: dict[str, Any], device_ids: list[int] | None = None, attempt: int = 1
) -> dict[str, Any]:
    """Push a notification to the users' active devices.

    At least once, and that is accepted: the push services deliver at least once themselves,
    and a notification carries a ``collapse_key`` so a duplicate replaces its twin. A task
    redelivered after a worker died sends again to every device; a retry (scheduled by
    ``notify_users`` for transient failures) sends only to the devices that failed.
    """
    summary = services.notify_users(
        user_ids=user_ids,
        notification=Notification.from_dict(notification),
        device_ids=device_ids,
        attempt=attempt,
    )
    return summary.as_dict()


@shared_task(name="core.push_purge_disabled_devices")
def push_purge_disabled_devices() -> int:
    return services.devices_purge_disabled(days=settings.PUSH_DISABLED_RETENTION_DAYS)
