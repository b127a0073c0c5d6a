"""Event types of the accounts app and their payloads (one builder per shape).

Every payload is plain JSON. ``user_public`` is the only shape in which another user appears.
"""

from __future__ import annotations

from typing import Any

from .models import FriendRequest, User

PROFILE_UPDATED = "profile.updated"  # a friend's public profile changed
ME_UPDATED = "me.updated"  # my own profile or privacy settings changed (my other devices)
REQUEST_RECEIVED = "contact.request.received"
REQUEST_SENT = "contact.request.sent"  # my other devices learn of a request I sent
REQUEST_ACCEPTED = "contact.request.accepted"  # to the requester
REQUEST_DECLINED = "contact.request.declined"  # to the decliner's own devices only
FRIEND_ADDED = "contact.friend.added"
FRIEND_REMOVED = "contact.friend.removed"
FRIEND_UPDATED = "contact.friend.updated"  # remark or tags changed (my devices)
TAGS_UPDATED = "contact.tags.updated"
BLOCK_ADDED = "contact.block.added"
BLOCK_REMOVED = "contact.block.removed"
SESSION_REVOKED = "account.session.revoked"

ALL_TYPES = (
    PROFILE_UPDATED,
    ME_UPDATED,
    REQUEST_RECEIVED,
    REQUEST_SENT,
    REQUEST_ACCEPTED,
    REQUEST_DECLINED,
    FRIEND_ADDED,
    FRIEND_REMOVED,
    FRIEND_UPDATED,
    TAGS_UPDATED,
    BLOCK_ADDED,
    BLOCK_REMOVED,
    SESSION_REVOKED,
)


def _url(field) -> str | None:
    return field.url if field else None


def user_public(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "handle": user.handle,
        "display_name": user.display_name,
        "avatar_url": _url(user.avatar),
        "avatar_thumb_url": _url(user.avatar_thumb),
        "region": user.region,
        "bio": user.bio,
    }


def user_brief(user: User) -> dict[str, Any]:
    """How a person appears inside other features (chat, Moments): a name and an avatar."""
    return {
        "id": user.id,
        "handle": user.handle,
        "display_name": user.display_name,
        "avatar_thumb_url": _url(user.avatar_thumb),
    }


def me_private(user: User) -> dict[str, Any]:
    return {
        **user_public(user),
        "phone": user.phone,
        "email": user.email,
        "findable_by_phone": user.findable_by_phone,
        "findable_by_handle": user.findable_by_handle,
        "friend_requests_need_approval": user.friend_requests_need_approval,
        "handle_changed_at": user.handle_changed_at.isoformat() if user.handle_changed_at else None,
    }


def friend_request(req: FriendRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "from_user": user_public(req.from_user),
        "to_user": user_public(req.to_user),
        "note": req.note,
        "source": req.source,
        "status": req.status,
        "created_at": req.created_at.isoformat(),
    }
