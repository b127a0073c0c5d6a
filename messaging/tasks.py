"""Messaging's Celery tasks (thin: ids in, work in ``messaging.notifications`` / services)."""

from __future__ import annotations

import logging

from celery import shared_task

from . import notifications
from .services import media, messages

logger = logging.getLogger(__name__)


@shared_task(name="messaging.push_flush")
def push_flush(user_ids: list[int], due_set: str | None = None) -> int:
    """Push one summary notification to each of these users, and each user of ``due_set``
    (``messaging.notifications``), who is still offline."""
    return notifications.flush_due(user_ids, due_set)


@shared_task(name="messaging.purge_orphan_media")
def purge_orphan_media() -> int:
    return media.attachments_purge_unused()


@shared_task(name="messaging.redact_recalled", acks_late=True)
def redact_recalled(message_id: int) -> int:
    """Erase a recalled message's text from the stored events (safe to run twice)."""
    return messages.message_events_redact(message_id=message_id)


@shared_task(name="messaging.purge_recalled_media", acks_late=True)
def purge_recalled_media(media_id: str) -> bool:
    """Delete a recalled message's upload unless another message still carries it (safe to run
    twice)."""
    return media.attachment_purge_recalled(media_id=media_id)
