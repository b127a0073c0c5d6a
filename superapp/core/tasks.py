"""Core periodic tasks (thin: they call plumbing functions and return)."""

from celery import shared_task
from django.conf import settings

from . import events


@shared_task(name="core.purge_old_events")
def purge_old_events() -> int:
    return events.purge_events_older_than(days=settings.EVENT_RETENTION_DAYS)
