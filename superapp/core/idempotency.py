"""``Idempotency-Key`` for POSTs that must never run twice (money), with Stripe's semantics.

Decorate a DRF view's ``post`` with :func:`idempotent`:

* the client sends ``Idempotency-Key: <unique string>`` (required; 400 ``idempotency_key_required``);
* the first request with a key runs; its response (status and body) is stored when it is final
  (any status below 500), keyed by (user, key);
* the same key with the same request (method, path and parsed body) within
  ``IDEMPOTENCY_KEY_TTL`` replays the stored response, with ``Idempotent-Replayed: true``;
* the same key with another request: 409 ``idempotency_key_reused``;
* the same key while the first request is still running: 409 ``idempotency_in_progress``
  (retry later), so concurrent requests with one key execute once;
* a 5xx or an unexpected exception releases the key (nothing was committed by an atomic
  service), so the client may retry with it.

The key row is committed *before* the view runs (its unique constraint is the lock) and the
response is stored *after* the service's own transaction. A crash between the two leaves the key
"in progress" until it expires: the client sees 409, never a second execution.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .errors import Conflict, ValidationFailed
from .models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _ttl() -> timedelta:
    return getattr(settings, "IDEMPOTENCY_KEY_TTL", timedelta(hours=24))


def request_fingerprint(request: Request) -> str:
    """Method, path and the parsed body in canonical JSON: the same payload, however formatted."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    raw = f"{request.method}\n{request.path}\n{body}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _claim(*, user_id: int, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Insert the key (committed at once); ``None`` if we own it now, else the existing row."""
    for _attempt in range(2):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(user_id=user_id, key=key, request_hash=fingerprint)
            return None
        except IntegrityError:
            existing = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
            if existing is None:
                continue  # released between our insert and our read: try again
            if existing.created_at < timezone.now() - _ttl():
                # Expired: forget it (only if nobody else replaced it meanwhile) and claim anew.
                IdempotencyKey.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
                continue
            return existing
    raise Conflict(_("This request is already being processed. Retry later."), code="idempotency_in_progress")


def _replay(row: IdempotencyKey, fingerprint: str) -> Response:
    if row.request_hash != fingerprint:
        raise Conflict(
            _("This Idempotency-Key was already used with a different request."),
            code="idempotency_key_reused",
        )
    if row.response_status is None:
        raise Conflict(
            _("This request is already being processed. Retry later."), code="idempotency_in_progress"
        )
    return Response(row.response_body, status=row.response_status, headers={"Idempotent-Replayed": "true"})


def idempotent(view_method: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate an authenticated DRF view method (``post``) to honour ``Idempotency-Key``."""

    @functools.wraps(view_method)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER, "").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed(
                _("Send a unique Idempotency-Key header (at most 255 characters) with this request."),
                code="idempotency_key_required",
            )
        fingerprint = request_fingerprint(request)
        existing = _claim(user_id=request.user.pk, key=key, fingerprint=fingerprint)
        if existing is not None:
            return _replay(existing, fingerprint)
        try:
            try:
                response = view_method(self, request, *args, **kwargs)
            except Exception as exc:
                response = self.handle_exception(exc)  # re-raises what DRF would not answer
        except BaseException:
            IdempotencyKey.objects.filter(user_id=request.user.pk, key=key).delete()
            raise
        if response.status_code >= 500:
            IdempotencyKey.objects.filter(user_id=request.user.pk, key=key).delete()
            return response
        body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
        IdempotencyKey.objects.filter(user_id=request.user.pk, key=key).update(
            response_status=response.status_code, response_body=body, completed_at=timezone.now()
        )
        return response

    return wrapper


def idempotency_keys_purge() -> int:
    """Delete keys older than the TTL; returns how many."""
    deleted, _detail = IdempotencyKey.objects.filter(created_at__lt=timezone.now() - _ttl()).delete()
    return deleted
