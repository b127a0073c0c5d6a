"""Core tables: the per-user event stream.

Every event a user must see is stored here first (persist, then notify). Each user has one
strictly increasing sequence, ``UserStream.last_seq``, shared by every kind of event (chat,
contacts, moments, payments, ...): the *cursor* a client keeps. Sequence numbers are handed out
under a row lock on the user's ``UserStream`` row, so for one user they are committed in order:
a client that has seen cursor N and asks for ``seq > N`` can never miss a later commit of a
smaller number (the race that a global auto-increment id would have).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


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
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
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
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
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
