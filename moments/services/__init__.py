"""Writes of Moments (its public write interface)."""

from .interactions import comment_create, comment_delete, like_add, like_remove, notifications_mark_read
from .media import media_purge_orphans, media_upload
from .posts import LinkCard, Place, post_delete, post_fan_out, post_hide, post_publish, post_unhide
from .preferences import friend_setting_update, moments_settings_update
from .reports import report_create, report_review

__all__ = [
    "LinkCard",
    "Place",
    "comment_create",
    "comment_delete",
    "friend_setting_update",
    "like_add",
    "like_remove",
    "media_purge_orphans",
    "media_upload",
    "moments_settings_update",
    "notifications_mark_read",
    "post_delete",
    "post_fan_out",
    "post_hide",
    "post_publish",
    "post_unhide",
    "report_create",
    "report_review",
]
