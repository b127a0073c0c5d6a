"""A user's messaging settings (push preview, strangers, presence) and presence answers."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from superapp.core import events as core_events
from superapp.core.errors import ValidationFailed

from .. import events
from ..models import UserSettings


@transaction.atomic
def settings_update(*, user_id: int, changes: dict[str, Any]) -> UserSettings:
    """Change some of ``show_preview``, ``allow_strangers``, ``presence_visibility``."""
    prefs, _created = UserSettings.objects.select_for_update().get_or_create(user_id=user_id)
    changed = []
    for name in ("show_preview", "allow_strangers"):
        if name in changes:
            if not isinstance(changes[name], bool):
                raise ValidationFailed(fields={name: [_("true or false.")]})
            changed.append(name)
            setattr(prefs, name, changes[name])
    if "presence_visibility" in changes:
        if changes["presence_visibility"] not in UserSettings.Visibility.values:
            raise ValidationFailed(fields={"presence_visibility": [_("everyone, friends or nobody.")]})
        prefs.presence_visibility = changes["presence_visibility"]
        changed.append("presence_visibility")
    if changed:
        prefs.save(update_fields=changed)
        core_events.publish(
            user_ids=[user_id], type=events.SETTINGS_UPDATED, data=events.user_settings(prefs)
        )
    return prefs
