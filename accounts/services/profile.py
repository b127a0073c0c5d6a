"""Profile writes: public fields, handle, privacy, avatar. Friends hear of public changes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from superapp.core import events as core_events
from superapp.core.errors import Conflict, ValidationFailed
from superapp.core.images import process_image

from .. import events, selectors
from ..identifiers import normalize_handle
from ..models import User
from . import hooks

PUBLIC_FIELDS = ("handle", "display_name", "region", "bio")
PRIVATE_FIELDS = ("findable_by_phone", "findable_by_handle", "friend_requests_need_approval")
_LIMITS = {"display_name": (1, 64), "region": (0, 64), "bio": (0, 200)}


def _announce(user: User, *, public_changed: bool, hooked: bool = False) -> None:
    """Tell the user's own devices, and when public fields changed, the user's friends (and the
    profile hooks, unless the caller called them already: ``hooked``)."""
    if public_changed and not hooked:
        hooks.profile_changed(user.pk)
    specs = [
        core_events.EventSpec(
            user_ids=[user.pk], type=events.ME_UPDATED, data={"me": events.me_private(user)}
        )
    ]
    if public_changed:
        friends = selectors.friend_ids(user_id=user.pk)
        if friends:
            specs.append(
                core_events.EventSpec(
                    user_ids=sorted(friends),
                    type=events.PROFILE_UPDATED,
                    data={"user": events.user_public(user)},
                )
            )
    core_events.publish_many(specs=specs)


@transaction.atomic
def profile_update(*, user: User, changes: dict[str, Any]) -> User:
    """Apply profile and privacy changes (only the keys given).

    The handle can be changed once every ``HANDLE_CHANGE_INTERVAL`` (a year), like WeChat ID.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    changed: list[str] = []
    errors: dict[str, list[str]] = {}
    for field, value in changes.items():
        if field == "handle":
            new = normalize_handle(str(value))
            if new == user.handle:
                continue
            if (
                user.handle_changed_at
                and timezone.now() - user.handle_changed_at < settings.HANDLE_CHANGE_INTERVAL
            ):
                next_at = user.handle_changed_at + settings.HANDLE_CHANGE_INTERVAL
                raise Conflict(
                    _("The handle can be changed once a year; next after %(date)s.")
                    % {"date": next_at.date()},
                    code="handle_change_too_soon",
                )
            if User.objects.filter(handle=new).exclude(pk=user.pk).exists():
                raise Conflict(_("This handle is taken."), code="handle_taken")
            user.handle = new
            user.handle_changed_at = timezone.now()
            changed += ["handle", "handle_changed_at"]
        elif field in _LIMITS:
            text = str(value).strip()
            low, high = _LIMITS[field]
            if not low <= len(text) <= high:
                errors[field] = [_("%(low)d to %(high)d characters.") % {"low": low, "high": high}]
                continue
            if getattr(user, field) != text:
                setattr(user, field, text)
                changed.append(field)
        elif field in PRIVATE_FIELDS:
            if not isinstance(value, bool):
                errors[field] = [_("Must be true or false.")]
                continue
            if getattr(user, field) != value:
                setattr(user, field, value)
                changed.append(field)
        else:
            errors[field] = [_("This field cannot be changed.")]
    if errors:
        raise ValidationFailed(fields=errors)
    if not changed:
        return user
    try:
        with transaction.atomic():
            user.save(update_fields=changed)
    except IntegrityError:
        raise Conflict(_("This handle is taken."), code="handle_taken") from None
    _announce(user, public_changed=any(f in PUBLIC_FIELDS for f in changed))
    return user


def avatar_set(*, user: User, upload) -> User:
    """Validate and store a new avatar (full size and thumbnail); friends are told."""
    processed = process_image(
        upload,
        max_bytes=settings.AVATAR_MAX_BYTES,
        max_pixels=settings.AVATAR_MAX_PIXELS,
        full_size=settings.AVATAR_SIZES[0],
        thumb_size=settings.AVATAR_SIZES[1],
        field="avatar",
    )
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        # Before the files are stored: a hook that refuses the write (503) leaves no orphan file.
        hooks.profile_changed(user.pk)
        old = (user.avatar.name, user.avatar_thumb.name)
        user.avatar.save(f"{user.pk}.{processed.full.name}", processed.full, save=False)
        user.avatar_thumb.save(f"{user.pk}.{processed.thumb.name}", processed.thumb, save=False)
        user.save(update_fields=["avatar", "avatar_thumb"])
        _announce(user, public_changed=True, hooked=True)
        transaction.on_commit(lambda: _delete_files(old))
    return user


def avatar_remove(*, user: User) -> User:
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if not user.avatar:
            return user
        old = (user.avatar.name, user.avatar_thumb.name)
        user.avatar = ""
        user.avatar_thumb = ""
        user.save(update_fields=["avatar", "avatar_thumb"])
        _announce(user, public_changed=True)
        transaction.on_commit(lambda: _delete_files(old))
    return user


def _delete_files(names: tuple[str, ...]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        if name:
            default_storage.delete(name)
