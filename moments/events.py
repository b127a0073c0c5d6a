"""Event types of Moments and the payload builders (REST answers render through the same ones).

Every payload is plain JSON. Another user appears only as :func:`user_brief`.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urljoin

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils.encoding import filepath_to_uri

from accounts import selectors as account_selectors

from .models import Comment, Media, Notification, Post

POST_CREATED = "moments.post.created"  # to the author's own devices
POST_DELETED = "moments.post.deleted"  # to the author's own devices
POST_HIDDEN = "moments.post.hidden"  # staff hid the author's post
POST_UNHIDDEN = "moments.post.unhidden"  # staff showed it again
INTERACTION = "moments.interaction"  # a like, comment or reply that concerns the recipient
INTERACTION_REMOVED = "moments.interaction.removed"  # those notifications are gone (unlike, delete, hide)
NOTIFICATIONS_READ = "moments.notifications.read"  # my other devices: the list was read
SETTINGS_UPDATED = "moments.settings.updated"  # my other devices: my Moments settings
FRIEND_SETTINGS_UPDATED = "moments.friend_settings.updated"  # my other devices: about one friend

ALL_TYPES = (
    POST_CREATED,
    POST_DELETED,
    POST_HIDDEN,
    POST_UNHIDDEN,
    INTERACTION,
    INTERACTION_REMOVED,
    NOTIFICATIONS_READ,
    SETTINGS_UPDATED,
    FRIEND_SETTINGS_UPDATED,
)

EXCERPT_CHARS = 100


def file_url(name: str | None) -> str | None:
    """The URL of a stored file by its name (what ``FieldFile.url`` gives), None when empty."""
    if not name:
        return None
    if default_storage.__class__ is FileSystemStorage:
        return _filesystem_url(default_storage.base_url, name)
    return default_storage.url(name)


@functools.lru_cache(maxsize=16384)
def _filesystem_url(base_url: str, name: str) -> str:
    # FileSystemStorage's URL is a function of its base URL and the name alone, and costs ~7 µs
    # (urljoin); a feed page has dozens. Other storages may sign URLs with an expiry: never kept.
    # Computed from the key itself (as FileSystemStorage.url does), never from whatever storage is
    # current when the cache is filled.
    return urljoin(base_url, filepath_to_uri(name).lstrip("/"))


def _url(field) -> str | None:
    return file_url(field.name) if field else None


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


# How a person appears in Moments: the accounts app's brief shape (the feed statement,
# moments/feed.py, builds the same shape in SQL).
user_brief = account_selectors.user_brief


def media(item: Media) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "url": _url(item.file),
        "thumb_url": _url(item.thumb),
        "width": item.width,
        "height": item.height,
        "size": item.size,
        "content_type": item.content_type,
    }


def comment(item: Comment) -> dict[str, Any]:
    return {
        "id": item.id,
        "post_id": item.post_id,
        "author": user_brief(item.author),
        "text": item.text,
        "reply_to_id": item.reply_to_id,
        "reply_to_user": user_brief(item.reply_to_user) if item.reply_to_user_id else None,
        "created_at": iso(item.created_at),
    }


def link_card(kind: str, url: str, title: str, description: str, thumb_url: str) -> dict[str, Any] | None:
    if kind != Post.Kind.LINK:
        return None
    return {"url": url, "title": title, "description": description, "thumb_url": thumb_url or None}


def place(name: str, latitude, longitude) -> dict[str, Any] | None:
    if not name:
        return None
    return {
        "name": name,
        "latitude": float(latitude) if latitude is not None else None,
        "longitude": float(longitude) if longitude is not None else None,
    }


def post_values(
    *,
    post_id: int,
    author_id: int,
    viewer_id: int,
    author: dict[str, Any],
    kind: str,
    text: str,
    visibility: str,
    created_at,
    media: list[dict[str, Any]],
    link: dict[str, Any] | None,
    location: dict[str, Any] | None,
    liked_by_me: bool,
    likes: list[dict[str, Any]],
    comments: list[dict[str, Any]],
) -> dict[str, Any]:
    """A post as ``viewer_id`` sees it, from rendered parts. ``likes`` and ``comments`` are only
    those this viewer may see; ``comments`` may hold one more than shown (then more_comments)."""
    mine = author_id == viewer_id
    limit = settings.MOMENTS_COMMENTS_SHOWN
    return {
        "id": post_id,
        "author": author,
        "kind": kind,
        "text": text,
        "media": media,
        "link": link,
        "location": location,
        "created_at": iso(created_at),
        "is_mine": mine,
        # Only the author learns how a post was shared (others must not learn they were left out).
        "visibility": visibility if mine else None,
        "liked_by_me": liked_by_me,
        "likes": likes,
        "comments": comments[:limit],
        "more_comments": len(comments) > limit,
    }


def post(item: Post, *, viewer_id: int) -> dict[str, Any]:
    """A post as ``viewer_id`` sees it.

    Expects what the selectors attach: ``media`` prefetched, ``visible_likes`` and
    ``visible_comments`` (only what this viewer may see), ``liked_by_me``; a post fresh from a
    service (no interactions yet) renders without them. The home feed on PostgreSQL renders the
    same shape from one SQL row (``moments.feed``).
    """
    return post_values(
        post_id=item.id,
        author_id=item.author_id,
        viewer_id=viewer_id,
        author=user_brief(item.author),
        kind=item.kind,
        text=item.text,
        visibility=item.visibility,
        created_at=item.created_at,
        media=[media(m) for m in item.media.all()],
        link=link_card(item.kind, item.link_url, item.link_title, item.link_description, item.link_thumb_url),
        location=place(item.location_name, item.latitude, item.longitude),
        liked_by_me=bool(getattr(item, "liked_by_me", False)),
        likes=[user_brief(like.user) for like in getattr(item, "visible_likes", [])],
        comments=[comment(c) for c in getattr(item, "visible_comments", [])],
    )


def post_brief(item: Post) -> dict[str, Any]:
    """The post a notification is about: its id, author, first words and first picture."""
    first = next(iter(item.media.all()), None)
    text = item.text if len(item.text) <= EXCERPT_CHARS else item.text[: EXCERPT_CHARS - 1] + "…"
    return {
        "id": item.id,
        "author_id": item.author_id,
        "kind": item.kind,
        "excerpt": text or item.link_title,
        "thumb_url": _url(first.thumb) if first else None,
    }


def notification(item: Notification) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "actor": user_brief(item.actor),
        "post": post_brief(item.post),
        "comment": comment(item.comment) if item.comment_id else None,
        "created_at": iso(item.created_at),
        "read": item.read_at is not None,
    }
