"""Who-sees-what settings: my time window for friends, and my choices about one friend."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import ValidationFailed

from .. import events, feed_cache, selectors
from ..models import FriendSetting, MomentsProfile


@transaction.atomic
def moments_settings_update(*, user, visible_days: int) -> MomentsProfile:
    """How far back friends may see my posts: 3, 30 or 180 days, or 0 for everything.

    Applies at once to every post, old ones included (visibility is decided at read time).
    """
    if visible_days not in MomentsProfile.Window.values:
        choices = ", ".join(str(v) for v in MomentsProfile.Window.values)
        raise ValidationFailed(fields={"visible_days": [_("One of: %(s)s.") % {"s": choices}]})
    profile, _created = MomentsProfile.objects.update_or_create(
        user=user, defaults={"visible_days": visible_days}
    )
    # Pages showing my posts (a narrower window takes some away), and my friends' pages (a
    # wider one brings old posts back, posts no entry depends on yet). Any window may be
    # narrower than the one before (only "everything", 0, never is): a removal.
    friends = account_selectors.friend_ids(user_id=user.pk)
    feed_cache.changed(people=[user.pk], viewers=[user.pk, *friends], removes=visible_days != 0)
    core_events.publish(
        user_ids=[user.pk], type=events.SETTINGS_UPDATED, data={"visible_days": profile.visible_days}
    )
    return profile


@transaction.atomic
def friend_setting_update(
    *, owner, target_id: int, hide_my_posts: bool | None = None, hide_their_posts: bool | None = None
) -> FriendSetting:
    """Set "don't let them see my Moments" and/or "hide their Moments from me" for one contact."""
    setting = selectors.friend_setting_get(owner_id=owner.pk, target_id=target_id)  # 404 if not a contact
    changes = {}
    if hide_my_posts is not None:
        changes["hide_my_posts"] = hide_my_posts
    if hide_their_posts is not None:
        changes["hide_their_posts"] = hide_their_posts
    if changes:
        setting, _created = FriendSetting.objects.update_or_create(
            owner=owner, target_id=target_id, defaults=changes
        )
        # "Don't let them see" decides the target's feed, "hide theirs" the owner's; either one
        # turned (or left) on takes posts away.
        feed_cache.changed(
            viewers=[owner.pk, target_id], removes=bool(hide_my_posts) or bool(hide_their_posts)
        )
    core_events.publish(
        user_ids=[owner.pk],
        type=events.FRIEND_SETTINGS_UPDATED,
        data={
            "user_id": target_id,
            "hide_my_posts": setting.hide_my_posts,
            "hide_their_posts": setting.hide_their_posts,
        },
    )
    return setting
