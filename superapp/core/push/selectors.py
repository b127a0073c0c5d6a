"""Reads of push devices."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from .models import PushDevice
from .notification import DeviceTarget


def device_list(*, user_id: int) -> QuerySet[PushDevice]:
    """A user's devices, active ones first, newest first."""
    return PushDevice.objects.filter(user_id=user_id).order_by("disabled_at", "-last_seen_at", "-id")


def devices_for_delivery(
    *, user_ids: Iterable[int], device_ids: Iterable[int] | None = None
) -> list[DeviceTarget]:
    """The active devices of ``user_ids`` (optionally only ``device_ids`` among them), in one query."""
    queryset = PushDevice.objects.filter(user_id__in=list(user_ids), disabled_at__isnull=True)
    if device_ids is not None:
        queryset = queryset.filter(id__in=list(device_ids))
    rows = queryset.order_by("id").values_list("id", "user_id", "platform", "token", "app_id", "locale")
    return [DeviceTarget(*row) for row in rows]
