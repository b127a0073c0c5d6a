"""Celery tasks of accounts: thin, idempotent enough to run twice."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone, translation

from .models import VerificationCode
from .senders import get_sender


@shared_task(
    name="accounts.send_verification_code", autoretry_for=(OSError,), retry_backoff=True, max_retries=5
)
def send_verification_code(*, channel: str, destination: str, code: str, language: str = "en") -> None:
    with translation.override(language):
        get_sender().send(channel=channel, destination=destination, code=code)


@shared_task(name="accounts.purge_expired_verification_codes")
def purge_expired_verification_codes() -> int:
    deleted, _ = VerificationCode.objects.filter(expires_at__lt=timezone.now() - timedelta(days=1)).delete()
    return deleted
