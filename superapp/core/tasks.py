"""Core tasks (thin: they call plumbing functions and return)."""

from celery import shared_task
from django.conf import settings

from . import events, webhooks


@shared_task(name="core.purge_old_events")
def purge_old_events() -> int:
    return events.purge_events_older_than(days=settings.EVENT_RETENTION_DAYS)


# The time limits keep an attempt shorter than its claim's lease (prefork pool), so a claim
# expires only when its worker is gone; acks_late: a worker lost mid-task has it redelivered
# (the redelivered task finds the attempt claimed; the sweeper takes over when the lease ends).
@shared_task(
    name="core.webhook_deliver",
    acks_late=True,
    soft_time_limit=webhooks.attempt_time_limit(),
    time_limit=webhooks.attempt_time_limit() + 5,
)
def webhook_deliver(delivery_id: int) -> str:
    return webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task(name="core.webhooks_sweep")
def webhooks_sweep() -> int:
    return webhooks.webhooks_requeue_due()


@shared_task(name="core.purge_old_webhooks")
def purge_old_webhooks() -> int:
    return webhooks.webhooks_purge(older_than_days=settings.WEBHOOK_RETENTION_DAYS)
