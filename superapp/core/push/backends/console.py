"""The default backend: one log line per device, for development and for deployments without push."""

from __future__ import annotations

import logging

from ..models import token_hint
from ..notification import DeviceResult, DeviceTarget, Notification
from .base import PushBackend

logger = logging.getLogger("superapp.push")


class ConsoleBackend(PushBackend):
    """Logs what would be pushed. Never the token in full, never the body (message text)."""

    name = "console"

    def send_one(self, device: DeviceTarget, notification: Notification) -> DeviceResult:
        logger.info(
            "push (console) to user %s device %s %s %s: title=%r body_chars=%d data_keys=%s "
            "collapse_key=%r badge=%s",
            device.user_id,
            device.id,
            device.platform,
            token_hint(device.token),
            notification.title,
            len(notification.body),
            sorted(notification.data),
            notification.collapse_key,
            notification.badge,
        )
        return self.result(device, "sent")
