"""Celery tasks of Moments: thin, take ids, safe to run twice (``acks_late`` redelivers)."""

from celery import shared_task
from django.db import OperationalError

from . import services


@shared_task(
    name="moments.fan_out_post",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def fan_out_post(post_id: int) -> int:
    """Put a post into its readers' timelines (a large audience's share of ``post_publish``)."""
    return services.post_fan_out(post_id=post_id)


@shared_task(name="moments.purge_orphan_media")
def purge_orphan_media() -> int:
    return services.media_purge_orphans()
