"""Messaging's Celery tasks (thin: ids in, work in ``messaging.notifications`` / services)."""

from __future__ import annotations

import logging

from celery import shared_task

from . import notifications
from .services import media, messages

logger = logging.getLogger(__name__)


@shared_task(name="messaging.push_flush")
def push_flush(user_ids: list[int]) -> int:
    """Push one summary notification to each of these users who is still offline."""
    pushed = 0
    for user_id in user_ids:
        try:
            pushed += notifications.flush_user(user_id)
        except Exception:  # one user's failure must not cost the others their notification
            logger.exception("push flush failed for user %s", user_id)
    return pushed


@shared_task(name="messaging.purge_orphan_media")
def purge_orphan_media() -> int:
    return media.attachments_purge_unused()


@shared_task(name="messaging.redact_recalled", acks_late=True)
def redact_recalled(message_id: int) -> int:
    """Erase a recalled message's text from the stored events (safe to run twice)."""
    return messages.message_events_redact(message_id=message_id)
