"""Core tables: the per-user event stream (below: idempotency keys, outbound webhooks, the audit log).

Every event a user must see is stored here first (persist, then notify). Each user has one
strictly increasing sequence, ``UserStream.last_seq``, shared by every kind of event (chat,
contacts, moments, payments, ...): the *cursor* a client keeps. Sequence numbers are handed out
under a row lock on the user's ``UserStream`` row, so for one user they are committed in order:
a client that has seen cursor N and asks for ``seq > N`` can never miss a later commit of a
smaller number (the race that a global auto-increment id would have).
"""

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class TimeStampedModel(models.Model):
    """Base model: creation and update times."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class UserStream(models.Model):
    """The head of one user's event stream."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(last_seq__gte=0), name="stream_seq_gte_0")]

    def __str__(self) -> str:
        return f"stream of user {self.user_id} at {self.last_seq}"


class Event(models.Model):
    """One event in one user's stream. Immutable once written, but for ``events.redact``."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: (user, seq) below leads with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    seq = models.BigIntegerField()
    type = models.CharField(max_length=64)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "seq"], name="event_user_seq_unique")]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} for user {self.user_id}"

    def envelope(self) -> dict:
        return {"type": self.type, "cursor": self.seq, "data": self.data}


class IdempotencyKey(models.Model):
    """One idempotency key of one user: the request's fingerprint and, once done, its response."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: (user, key) below leads with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of {self.user_id}"


# Push devices live in their own package (superapp.core.push); imported here so Django sees the model.
from .push.models import PushDevice  # noqa: E402, F401


class WebhookDelivery(models.Model):
    """One signed event POSTed to a third party's URL, retried until it answers 2xx or gives up.

    Written by :func:`superapp.core.webhooks.webhook_enqueue` in the caller's transaction; the
    body is built once and sent byte for byte on every attempt (only the signature's timestamp
    changes). ``dedup_key`` is unique: enqueuing the same key again returns this row.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    id = models.BigAutoField(primary_key=True)
    public_id = models.CharField(max_length=40, unique=True)  # "evt_...", the body's "id"
    dedup_key = models.CharField(max_length=255, unique=True)
    url = models.CharField(max_length=2048)
    event_type = models.CharField(max_length=100, db_index=True)
    body = models.TextField()  # the exact JSON sent (UTF-8)
    # Needed to sign each attempt (the signature covers the attempt's timestamp); never shown
    # in the admin nor logged.
    secret = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # When the next attempt is due (pending only).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While an attempt is in flight: until when its worker owns it (a crashed worker's claim expires).
    locked_until = models.DateTimeField(null=True, blank=True)
    # When the Celery task last sent for this delivery is due to run; null when none is on its
    # way (long delays are left to the sweeper). The sweeper re-queues what is overdue.
    task_due_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(status="pending"), name="webhook_pending_due"
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "delivered", "failed"]), name="webhook_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.event_type} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: append-only history (a table rather than a JSON list on the
    delivery, so that recording an attempt never rewrites a growing row and staff can query it)."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # null: no HTTP answer
    error = models.CharField(max_length=200, blank=True)  # empty when 2xx
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class AuditLogEntry(models.Model):
    """Who did what to which object: append-only (a PostgreSQL trigger refuses UPDATE and DELETE,
    except the one update ``SET_NULL`` makes when the actor's account is deleted; the actor's
    username is copied so the entry still names them)."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    target_object_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["target_content_type", "target_object_id"], name="audit_target"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_username or '-'} {self.action} {self.target_repr}"
