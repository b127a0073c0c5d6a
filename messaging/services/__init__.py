"""Messaging's write interface (other apps, views, consumers and tasks call these)."""

from .groups import (
    InviteOutcome,
    group_avatar_set,
    group_create,
    group_dissolve,
    group_invite,
    group_invite_link,
    group_invite_links_revoke,
    group_invite_qr_png,
    group_invite_url,
    group_join_by_link,
    group_remove_member,
    group_set_role,
    group_transfer,
    group_update,
    join_request_decide,
    member_settings_update,
)
from .media import attachment_upload, attachments_purge_unused
from .messages import (
    SendResult,
    conversation_mark_read,
    message_forward,
    message_hide,
    message_recall,
    message_send,
    typing_notify,
)
from .money import PaymentPost, payment_message_post, payment_message_update
from .preferences import settings_update

__all__ = [
    "InviteOutcome",
    "PaymentPost",
    "SendResult",
    "attachment_upload",
    "attachments_purge_unused",
    "conversation_mark_read",
    "group_avatar_set",
    "group_create",
    "group_dissolve",
    "group_invite",
    "group_invite_link",
    "group_invite_links_revoke",
    "group_invite_qr_png",
    "group_invite_url",
    "group_join_by_link",
    "group_remove_member",
    "group_set_role",
    "group_transfer",
    "group_update",
    "join_request_decide",
    "member_settings_update",
    "message_forward",
    "message_hide",
    "message_recall",
    "message_send",
    "payment_message_post",
    "payment_message_update",
    "settings_update",
    "typing_notify",
]
