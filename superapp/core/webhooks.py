"""Outbound webhooks: signed events POSTed to a third party's URL, retried until it answers 2xx.

Domain apps (payments' merchant notifications, official accounts' callbacks) use:

* :func:`webhook_enqueue` inside their own transaction: one :class:`WebhookDelivery` row, the
  first attempt after commit (a rolled-back write notifies nobody); ``dedup_key`` makes it
  idempotent (a service run twice notifies once);
* :func:`webhook_delivery_get` to show a notification's status;
* :func:`webhook_url_check` when a business configures its URL (outside any transaction: it
  resolves the host);
* :func:`webhook_signature_verify` / :func:`webhook_signature_header`: the signature scheme
  (Stripe's: ``t=<unix ts>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``), for receivers and tests.

Delivery (:func:`webhook_deliver`, run by the Celery task ``core.webhook_deliver``) claims the due
attempt with a conditional UPDATE (a lease in ``locked_until``), so two workers never send the same
attempt; the HTTP call runs outside any transaction and holds no row lock; the outcome is recorded
with conditional UPDATEs. Failures are retried on ``WEBHOOK_RETRY_SCHEDULE`` until
``WEBHOOK_MAX_AGE`` after creation, then the delivery is ``failed``. Short waits are Celery
countdowns; longer ones (and tasks lost with a worker) are picked up by the beat task
``core.webhooks_sweep`` (:func:`webhooks_requeue_due`). See docs/webhooks.md.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from prometheus_client import Counter

from . import outbound
from .errors import ApplicationError, Conflict, NotFound, ValidationFailed
from .models import WebhookAttempt, WebhookDelivery

logger = logging.getLogger("superapp.webhooks")

SIGNATURE_HEADER = "X-Superapp-Signature"
USER_AGENT = "superapp-webhooks/1"
# Waits up to this long are Celery countdowns; longer ones are left to the sweeper, because the
# Redis broker redelivers a message not acknowledged within its visibility timeout (one hour).
COUNTDOWN_MAX = 900.0
# A task this overdue is presumed lost (worker crash, broker down at enqueue) and sent again.
SWEEP_GRACE = 120.0
SWEEP_BATCH = 1000
# A countdown may fire a moment before the due time by another machine's clock (NTP keeps
# clocks within milliseconds; a task that comes too early is skipped and swept up later).
CLOCK_TOLERANCE = timedelta(seconds=0.5)
RESPONSE_EXCERPT_BYTES = 500

Status = WebhookDelivery.Status

webhook_attempts_total = Counter(
    "superapp_webhook_attempts_total", "Outbound webhook attempts, by outcome", ["outcome"]
)


class WebhookSignatureInvalid(ApplicationError):
    """The ``X-Superapp-Signature`` header does not prove that the body came from us."""

    default_code = "webhook_signature_invalid"
    default_message = _("The webhook signature is not valid.")


# --- time limits (used by the Celery task and the claim) ----------------------------------------


def attempt_time_limit() -> float:
    """Seconds an attempt may take before Celery interrupts it (soft limit)."""
    return 4 * settings.WEBHOOK_TIMEOUT + 20


def attempt_lease() -> timedelta:
    """How long a claimed attempt belongs to its worker: longer than the task's hard time limit,
    so that a claim expires only when its worker is gone."""
    return timedelta(seconds=attempt_time_limit() + settings.WEBHOOK_TIMEOUT + 10)


# --- signatures ---------------------------------------------------------------------------------


def _sign(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_signature_header(*, body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``X-Superapp-Signature`` value for ``body``: ``t=<unix ts>,v1=<hex HMAC-SHA256>``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_sign(body, secret, t)}"


def webhook_signature_verify(*, body: bytes, header: str, secret: str, tolerance: int = 300) -> None:
    """Check an ``X-Superapp-Signature`` header against the raw request body.

    Several ``v1`` values may be present (one per secret while a secret is being rotated); one
    matching is enough. Compare against the raw bytes received, before any JSON parsing.

    Args:
        body: the request body, exactly as received.
        header: the header's value.
        secret: the endpoint's signing secret.
        tolerance: seconds the timestamp may differ from now (replay window); 0 disables the check.

    Raises:
        WebhookSignatureInvalid: malformed header (``webhook_signature_malformed``), timestamp out
            of tolerance (``webhook_signature_expired``), or no matching signature
            (``webhook_signature_mismatch``).
    """
    timestamp: str | None = None
    signatures: list[str] = []
    for item in (header or "").split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not re.fullmatch(r"[0-9]{1,12}", timestamp) or not signatures:
        raise WebhookSignatureInvalid(
            _("The signature header is missing or malformed."), code="webhook_signature_malformed"
        )
    t = int(timestamp)
    if tolerance and abs(time.time() - t) > tolerance:
        raise WebhookSignatureInvalid(
            _("The signature's timestamp is outside the tolerance."), code="webhook_signature_expired"
        )
    expected = _sign(body, secret, t).encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures):
        raise WebhookSignatureInvalid(_("No signature matches the body."), code="webhook_signature_mismatch")


# --- URLs -------------------------------------------------------------------------------------


def webhook_url_check(*, url: str, resolve: bool = True) -> None:
    """Raise unless ``url`` may receive webhooks.

    An absolute ``http``/``https`` URL with a host. Unless ``WEBHOOK_ALLOW_PRIVATE_HOSTS``, the host
    must resolve only to public addresses: never loopback, private, link-local (cloud metadata),
    shared or reserved ones. ``resolve=False`` skips the DNS lookup (literal IPs are still
    checked); call it with ``resolve=True`` outside transactions when you can, e.g. when a
    business saves its URL. The check is repeated at every attempt on the addresses connected to.

    Raises:
        ValidationFailed: ``webhook_url_invalid`` or ``webhook_url_private`` (field ``url``).
    """
    try:
        parts = outbound.parse_http_url(url)
    except outbound.InvalidUrl as exc:
        raise ValidationFailed(
            exc.args[0], code="webhook_url_invalid", fields={"url": [str(exc.args[0])]}
        ) from None
    if settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        return
    host = parts.hostname or ""
    if not resolve and outbound.literal_address(host) is None:
        return
    try:
        outbound.check_public(host, outbound.resolve_host(host, outbound.port_of(parts)))
    except outbound.HostRefused as exc:
        if exc.code == "dns_error":
            message = _("The URL's host could not be resolved.")
            raise ValidationFailed(
                message, code="webhook_url_invalid", fields={"url": [str(message)]}
            ) from exc
        message = _(
            "The URL's host is a private, loopback or link-local address; webhooks go to public hosts."
        )
        raise ValidationFailed(message, code="webhook_url_private", fields={"url": [str(message)]}) from exc


redacted_url = outbound.redacted_url


# --- enqueue ------------------------------------------------------------------------------------


def _check_text(value: Any, field: str, max_length: int) -> None:
    if not isinstance(value, str) or not value or len(value) > max_length:
        message = _("A non-empty string of at most %(max)d characters.") % {"max": max_length}
        raise ValidationFailed(fields={field: [str(message)]}, code="webhook_invalid")


def _schedule(delivery_id: int, countdown: float | None = None) -> None:
    from .tasks import webhook_deliver as task  # tasks imports this module

    task.apply_async(args=[delivery_id], countdown=countdown)


def _schedule_on_commit(delivery_id: int, countdown: float | None = None) -> None:
    # robust: a broker outage after the caller's commit must not turn its committed write into a
    # 500; the sweeper sends the task later.
    transaction.on_commit(lambda: _schedule(delivery_id, countdown), robust=True)


def webhook_enqueue(
    *, url: str, event_type: str, payload: dict, secret: str, dedup_key: str, resolve: bool = True
) -> WebhookDelivery:
    """Store a signed event for ``url`` and send it after the current transaction commits.

    Call it inside the transaction of the change it reports (a payment, a refund): the row is
    inserted there and the first attempt is scheduled on commit, so a rolled-back change
    notifies nobody. Outside a transaction the attempt is scheduled at once.

    The body is ``{"id": "evt_...", "type": event_type, "created": <unix ts>, "data": payload}``,
    built once and sent byte for byte on every attempt.

    Args:
        url: the receiver (http or https; public hosts only unless ``WEBHOOK_ALLOW_PRIVATE_HOSTS``).
        event_type: e.g. ``"payment.succeeded"`` (at most 100 characters).
        payload: JSON-serialisable dict (DjangoJSONEncoder: datetimes, Decimals, UUIDs allowed).
        secret: the receiver's signing secret (stored to sign each attempt; never logged).
        dedup_key: unique per event (e.g. ``"payment:42:succeeded"``). Enqueuing a key again returns
            the existing delivery unchanged and sends nothing new, whatever the other arguments.
        resolve: resolve the host now to refuse private addresses (production). ``False`` skips
            the DNS lookup (a slow resolver would hold the caller's locks): fine when the URL was
            checked with :func:`webhook_url_check` when it was saved; every attempt checks again.

    Raises:
        ValidationFailed: bad URL (``webhook_url_invalid`` / ``webhook_url_private``), empty or too
            long strings, or a payload that is not a JSON-serialisable dict (``webhook_invalid``).
    """
    _check_text(dedup_key, "dedup_key", 255)
    existing = WebhookDelivery.objects.filter(dedup_key=dedup_key).first()
    if existing is not None:
        return existing
    _check_text(event_type, "event_type", 100)
    _check_text(secret, "secret", 255)
    if not isinstance(payload, dict):
        raise ValidationFailed(fields={"payload": [str(_("A JSON object."))]}, code="webhook_invalid")
    webhook_url_check(url=url, resolve=resolve)
    now = timezone.now()
    public_id = f"evt_{secrets.token_hex(12)}"
    envelope = {"id": public_id, "type": event_type, "created": int(now.timestamp()), "data": payload}
    try:
        body = json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            fields={"payload": [str(_("The payload cannot be encoded as JSON."))]}, code="webhook_invalid"
        ) from exc
    delivery = WebhookDelivery(
        public_id=public_id,
        dedup_key=dedup_key,
        url=url,
        event_type=event_type,
        body=body,
        secret=secret,
        status=Status.PENDING,
        created_at=now,
        next_attempt_at=now,
        task_due_at=now,
    )
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives a duplicate
            delivery.save(force_insert=True)
    except IntegrityError:
        # Another transaction inserted the key first and has committed (the unique index made us
        # wait for it).
        existing = WebhookDelivery.objects.filter(dedup_key=dedup_key).first()
        if existing is None:
            raise
        return existing
    _schedule_on_commit(delivery.id)
    return delivery


# --- reads --------------------------------------------------------------------------------------


def webhook_delivery_get(*, dedup_key: str) -> WebhookDelivery | None:
    """The delivery enqueued with ``dedup_key``, or ``None``."""
    return WebhookDelivery.objects.filter(dedup_key=dedup_key).first()


# --- staff --------------------------------------------------------------------------------------


def webhook_retry_now(*, delivery_id: int) -> WebhookDelivery:
    """Make a pending or failed delivery due now and send its task after commit.

    A failed delivery gets one more attempt (it is past its age, so a failure ends it ``failed``
    again). An attempt in flight is not doubled: the new task finds the delivery claimed.

    Raises:
        NotFound: no such delivery.
        Conflict: ``webhook_already_delivered``.
    """
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(id=delivery_id).first()
        if delivery is None:
            raise NotFound()
        if delivery.status == Status.DELIVERED:
            raise Conflict(_("This webhook was already delivered."), code="webhook_already_delivered")
        now = timezone.now()
        delivery.status = Status.PENDING
        delivery.next_attempt_at = now
        delivery.task_due_at = now
        delivery.save(update_fields=["status", "next_attempt_at", "task_due_at"])
        _schedule_on_commit(delivery.id)
    logger.info(
        "webhooks.retry_now",
        extra={"delivery": delivery.public_id, "event_type": delivery.event_type},
    )
    return delivery


# --- delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@functools.lru_cache(maxsize=4)
def _verify(ca_file: str) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def _read_excerpt(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_EXCERPT_BYTES:
            break
    text = b"".join(chunks)[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return text.replace("\x00", "")


def _post(delivery: WebhookDelivery) -> _Outcome:
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Superapp-Event-Id": delivery.public_id,
        "X-Superapp-Event-Type": delivery.event_type,
        SIGNATURE_HEADER: webhook_signature_header(body=body, secret=delivery.secret),
    }
    started = time.monotonic()
    status_code: int | None = None
    error = excerpt = ""
    try:
        targets, host_header, extensions = outbound.pinned_targets(
            delivery.url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_HOSTS
        )
        # One client per attempt: connections to a pinned IP must not be shared between host names
        # (the TLS session was verified for one name only).
        with httpx.Client(
            timeout=settings.WEBHOOK_TIMEOUT,
            verify=_verify(settings.WEBHOOK_CA_FILE),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            for index, target in enumerate(targets):
                try:
                    with client.stream(
                        "POST",
                        target,
                        content=body,
                        headers={**headers, **host_header},
                        extensions=extensions,
                    ) as response:
                        status_code = response.status_code
                        excerpt = _read_excerpt(response)
                    break
                except (httpx.ConnectError, httpx.ConnectTimeout):
                    if index == len(targets) - 1:
                        raise
        if status_code is not None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except outbound.HostRefused as exc:
        error = str(exc)
    except outbound.InvalidUrl as exc:
        error = f"invalid_url: {exc}"
    except httpx.TimeoutException as exc:
        error = f"timeout ({type(exc).__name__})"
    except httpx.ConnectError as exc:
        error = f"connect_error: {exc}"
    except httpx.RemoteProtocolError as exc:
        error = f"protocol_error: {exc}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except SoftTimeLimitExceeded:
        error = "timeout (the attempt's time limit)"
    duration_ms = int((time.monotonic() - started) * 1000)
    return _Outcome(status_code=status_code, error=error[:200], excerpt=excerpt, duration_ms=duration_ms)


def _next_attempt_at(*, created_at: datetime, number: int, now: datetime) -> datetime | None:
    """When to try again after attempt ``number`` failed at ``now``; ``None``: give up.

    The schedule's last value repeats. A wait that would end past the max age is cut to end at
    it, so one attempt is made at the max age; an attempt that fails at or past it is the last.
    """
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    deadline = created_at + timedelta(seconds=settings.WEBHOOK_MAX_AGE)
    if now >= deadline:
        return None
    delay = timedelta(seconds=schedule[min(number, len(schedule)) - 1])
    return min(now + delay, deadline)


def webhook_deliver(*, delivery_id: int) -> str:
    """Make the due attempt of one delivery, unless it is not due or another worker is making it.

    Safe to run twice and concurrently: the attempt is claimed by a conditional UPDATE that only
    one caller can win. Call it outside any transaction (the claim must be visible to others at
    once, and the HTTP call must hold no lock). Used by the Celery task ``core.webhook_deliver``.

    Returns:
        ``"delivered"``, ``"retry"`` (failed; next attempt scheduled), ``"failed"`` (gave up),
        ``"skipped"`` (not due, already claimed, finished, or gone) or ``"superseded"`` (our claim
        had expired and another worker took the delivery over; the attempt is still recorded).
    """
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(
            id=delivery_id, status=Status.PENDING, next_attempt_at__lte=now + CLOCK_TOLERANCE
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .update(attempt_count=F("attempt_count") + 1, locked_until=now + attempt_lease(), last_attempt_at=now)
    )
    if not claimed:
        return "skipped"
    delivery = WebhookDelivery.objects.filter(id=delivery_id).first()
    if delivery is None:
        return "skipped"
    number = delivery.attempt_count
    outcome = _post(delivery)
    result = _record(delivery=delivery, number=number, started_at=now, outcome=outcome)
    webhook_attempts_total.labels(outcome=result).inc()
    log = logger.warning if result == "failed" else logger.info
    log(
        "webhooks.attempt",
        extra={
            "delivery": delivery.public_id,
            "event_type": delivery.event_type,
            "url": redacted_url(delivery.url),
            "attempt": number,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
            "outcome": result,
        },
    )
    return result


def _record(*, delivery: WebhookDelivery, number: int, started_at: datetime, outcome: _Outcome) -> str:
    finished = timezone.now()
    mine = WebhookDelivery.objects.filter(id=delivery.id, status=Status.PENDING)
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery_id=delivery.id,
            number=number,
            started_at=started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=outcome.error,
            response_excerpt=outcome.excerpt,
        )
        last = {"last_status_code": outcome.status_code, "last_error": outcome.error}
        if outcome.ok:
            # Delivered wins whoever held the claim.
            mine.update(
                status=Status.DELIVERED,
                delivered_at=finished,
                next_attempt_at=None,
                locked_until=None,
                task_due_at=None,
                **last,
            )
            return "delivered"
        next_at = _next_attempt_at(created_at=delivery.created_at, number=number, now=finished)
        if next_at is None:
            fields: dict[str, Any] = {"status": Status.FAILED, "next_attempt_at": None, "task_due_at": None}
            result = "failed"
            countdown = None
        else:
            countdown = (next_at - finished).total_seconds()
            if countdown > COUNTDOWN_MAX:
                countdown = None  # the sweeper sends the task when it is due
            fields = {"next_attempt_at": next_at, "task_due_at": next_at if countdown is not None else None}
            result = "retry"
        if not mine.filter(attempt_count=number).update(locked_until=None, **fields, **last):
            return "superseded"
        if countdown is not None:
            _schedule_on_commit(delivery.id, countdown=max(countdown, 0.0))
    return result


def webhooks_requeue_due(*, grace: float = SWEEP_GRACE, limit: int = SWEEP_BATCH) -> int:
    """Send a task for each due delivery that has none on its way; returns how many.

    That is: pending, due, not claimed (or its claim expired with its worker), and either no task
    was sent for it (waits longer than ``COUNTDOWN_MAX``) or the last one is ``grace`` seconds
    overdue (lost with a worker or the broker). Run every minute by the beat task
    ``core.webhooks_sweep``. A task sent twice is harmless: only one can claim the attempt.
    """
    now = timezone.now()
    ids = list(
        WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .filter(Q(task_due_at__isnull=True) | Q(task_due_at__lte=now - timedelta(seconds=grace)))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return 0
    WebhookDelivery.objects.filter(id__in=ids).update(task_due_at=now)
    for delivery_id in ids:
        _schedule(delivery_id)
    logger.info("webhooks.requeued", extra={"count": len(ids)})
    return len(ids)


def webhooks_purge(*, older_than_days: int) -> int:
    """Delete finished deliveries (delivered or failed) older than ``older_than_days``, with their
    attempts; returns how many deliveries. Pending ones are never purged. Their ``dedup_key``
    can be used again afterwards: callers name keys after things that happen once (an order's
    payment, a refund), so a purged key does not come back in practice."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    finished = WebhookDelivery.objects.filter(
        created_at__lt=cutoff, status__in=[WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.FAILED]
    )
    deleted = 0
    while True:  # in batches: one long DELETE would hold locks on the whole table's tail
        ids = list(finished.values_list("id", flat=True)[:1000])
        if not ids:
            return deleted
        deleted += WebhookDelivery.objects.filter(id__in=ids).delete()[1].get("core.WebhookDelivery", 0)
