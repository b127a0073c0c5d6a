"""The audit log: an append-only record of who did what to which object (staff actions).

Call :func:`audit_record` inside the transaction of the action it records (a refund, a dispute
decision), so that the entry exists exactly when the action does; from an admin action,
:func:`audit_admin_action` takes the actor and client IP from the request. Entries are never
changed: the admin is read-only and, on PostgreSQL, a trigger refuses UPDATE and DELETE (except
the ``SET NULL`` of the actor when their account is deleted; the username stays copied).
"""

from __future__ import annotations

import ipaddress

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from .errors import ValidationFailed
from .models import AuditLogEntry


def audit_record(
    *,
    actor_id: int | None,
    action: str,
    target: models.Model,
    details: dict | None = None,
    ip: str | None = None,
) -> AuditLogEntry:
    """Append one entry: ``actor_id`` (None: the system) did ``action`` to ``target``.

    Args:
        actor_id: the user who acted; their username is copied into the entry.
        action: a stable dotted name, e.g. ``"payments.refund"`` (at most 100 characters).
        target: a saved model instance; its content type, primary key and ``str()`` are kept.
        details: JSON-serialisable facts (amounts, reasons, before/after values).
        ip: the actor's IP address, if known (anything else is stored as unknown).

    Raises:
        ValidationFailed: empty or long ``action``, unsaved target, unknown actor.
    """
    if not isinstance(action, str) or not action or len(action) > 100:
        raise ValidationFailed(fields={"action": [str(_("A non-empty string of at most 100 characters."))]})
    if target.pk is None:
        raise ValidationFailed(fields={"target": [str(_("The target must be saved first."))]})
    username = ""
    if actor_id is not None:
        user_model = get_user_model()
        actor = user_model._default_manager.filter(pk=actor_id).first()
        if actor is None:
            raise ValidationFailed(fields={"actor_id": [str(_("No such user."))]})
        username = actor.get_username()
    return AuditLogEntry.objects.create(
        actor_id=actor_id,
        actor_username=username[:150],
        action=action,
        target_content_type=ContentType.objects.get_for_model(target, for_concrete_model=False),
        target_object_id=str(target.pk)[:64],
        target_repr=str(target)[:200],
        details=details or {},
        ip=_valid_ip(ip),
    )


def _valid_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or with ``PROXY_COUNT`` proxies in front the address
    they appended to ``X-Forwarded-For`` (DRF's ``NUM_PROXIES`` rule; a client-sent value is
    never trusted when there is no proxy)."""
    if api_settings.NUM_PROXIES:
        return _valid_ip(BaseThrottle().get_ident(request))
    return _valid_ip(request.META.get("REMOTE_ADDR"))


def audit_admin_action(
    request: HttpRequest, action: str, target: models.Model, details: dict | None = None
) -> AuditLogEntry:
    """:func:`audit_record` for a staff request (an admin action or view): actor and IP from it."""
    user = getattr(request, "user", None)
    actor_id = user.pk if user is not None and user.is_authenticated else None
    return audit_record(
        actor_id=actor_id, action=action, target=target, details=details, ip=client_ip(request)
    )


def audit_entries_for(*, target: models.Model) -> models.QuerySet[AuditLogEntry]:
    """The entries about ``target``, newest first (for a domain app's admin or history view)."""
    return AuditLogEntry.objects.filter(
        target_content_type=ContentType.objects.get_for_model(target, for_concrete_model=False),
        target_object_id=str(target.pk),
    ).order_by("-created_at", "-id")
