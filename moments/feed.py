"""The home feed's read path on PostgreSQL: one prepared SQL statement per page.

The feed is the hottest read of Moments. Built with the ORM (``selectors.feed``: the page, then
media, likes and comments prefetched) a page costs about 35 ms of Python, two thirds of it
assembling and compiling the visibility condition and four queries, and instantiating some 300
model objects. Here the same page is one statement with constant text: PostgreSQL picks the
page (the rule of ``selectors.visible_to``, written out below; who is a friend comes from
accounts' own compiled query, see ``moments.sql``) and builds each post as JSON in the shape of
``moments.events.post_values`` (media, the likes and comments this viewer may see,
``liked_by_me``), with file names where the payload has URLs; Python parses it (orjson) and asks
the storage for the URLs. A change to ``visible_to`` or to the payload's shape must be made here
too: the equivalence test fails until it is.

``selectors.feed`` stays the reference: it serves other databases (the embedded SQLite default)
and ``tests/moments/test_feed_sql.py`` checks that both give the same pages, payloads included.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from superapp.core.prepared import PreparedStatement

from . import events
from .models import MomentsProfile, Post, Visibility
from .sql import friend_ids_sql

WINDOWS = [days for days in MomentsProfile.Window.values if days]


def _brief_json(alias: str) -> str:
    # accounts' user_brief shape; the avatar as a file name, made a URL in Python (storage).
    return (
        f"json_build_object('id', {alias}.id, 'handle', {alias}.handle, 'display_name', {alias}.display_name, "
        f"'avatar_thumb_url', NULLIF({alias}.avatar_thumb, ''))"
    )


def _iso(column: str) -> str:
    # events.iso: Python's isoformat() in UTC with "Z", which leaves out a zero fraction.
    return (
        f"to_char({column} AT TIME ZONE 'UTC', CASE WHEN mod(extract(microseconds FROM {column}), 1000000) = 0 "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )


_TOO_OLD = " OR ".join(f"(m.visible_days = {days} AND t.created < %(cutoff_{days})s)" for days in WINDOWS)


@functools.cache
def _sql() -> str:
    """The statement, built once from constants (every value is a query parameter)."""
    friends = friend_ids_sql(param="viewer")
    users = get_user_model()._meta.db_table  # people appear as user_brief: id, handle, name, avatar
    return f"""
WITH friends AS (
    -- accounts.selectors.friend_ids_query, compiled by accounts: the viewer's friends, no block
    {friends}
),
page AS (
    SELECT t.post_id, t.created
    FROM moments_timeline t JOIN moments_post p ON p.id = t.post_id
    WHERE t.user_id = %(viewer)s
      AND (t.created, t.post_id) < (%(before_created)s, %(before_id)s)
      AND p.hidden_at IS NULL
      -- mine, or (about the author) a friend, not hiding from me, not muted by me, within their window;
      AND (t.author_id = %(viewer)s OR (
            t.author_id IN (SELECT friend_id FROM friends)
        AND t.author_id NOT IN (
            SELECT s.owner_id FROM moments_friendsetting s WHERE s.target_id = %(viewer)s AND s.hide_my_posts)
        AND t.author_id NOT IN (
            SELECT s.target_id FROM moments_friendsetting s WHERE s.owner_id = %(viewer)s AND s.hide_their_posts)
        AND NOT EXISTS (
            SELECT 1 FROM moments_momentsprofile m WHERE m.user_id = t.author_id AND ({_TOO_OLD}))))
      -- and mine, or (about the post) shared with me. Two conditions, the timeline's and the post's
      -- ("A or (B and C)" is "(A or B) and (A or C)"): mixed in one, PostgreSQL evaluated the
      -- timeline's part twice, building the friends hash twice.
      AND (t.author_id = %(viewer)s
        OR p.visibility = '{Visibility.FRIENDS}'
        OR (p.visibility = '{Visibility.INCLUDE}' AND EXISTS (
            SELECT 1 FROM moments_postaudience a WHERE a.post_id = p.id AND a.user_id = %(viewer)s))
        OR (p.visibility = '{Visibility.EXCLUDE}' AND NOT EXISTS (
            SELECT 1 FROM moments_postaudience a WHERE a.post_id = p.id AND a.user_id = %(viewer)s)))
    ORDER BY t.created DESC, t.post_id DESC
    LIMIT %(limit)s + 1  -- one more than shown: whether there is a next page
),
listed AS (SELECT post_id, created FROM page ORDER BY created DESC, post_id DESC LIMIT %(limit)s)
SELECT listed.created, p.id, (SELECT count(*) FROM page) > %(limit)s, json_build_object(
    -- events.post_values' shape, file names in place of URLs
    'id', p.id,
    'author', {_brief_json("u")},
    'kind', p.kind,
    'text', p.text,
    'media', COALESCE((
        SELECT json_agg(json_build_object(
            'id', m.id, 'kind', m.kind, 'url', NULLIF(m.file, ''), 'thumb_url', NULLIF(m.thumb, ''),
            'width', m.width, 'height', m.height, 'size', m.size, 'content_type', m.content_type
        ) ORDER BY m.position)
        FROM moments_media m WHERE m.post_id = p.id), '[]'),
    'link', CASE WHEN p.kind = '{Post.Kind.LINK}' THEN json_build_object(
        'url', p.link_url, 'title', p.link_title, 'description', p.link_description,
        'thumb_url', NULLIF(p.link_thumb_url, '')) END,
    'location', CASE WHEN p.location_name <> '' THEN json_build_object(
        'name', p.location_name, 'latitude', p.latitude::float8, 'longitude', p.longitude::float8) END,
    'created_at', {_iso("p.created_at")},
    'is_mine', p.author_id = %(viewer)s,
    -- only the author learns how a post was shared
    'visibility', CASE WHEN p.author_id = %(viewer)s THEN p.visibility END,
    'liked_by_me', EXISTS (SELECT 1 FROM moments_like l WHERE l.post_id = p.id AND l.user_id = %(viewer)s),
    'likes', COALESCE((SELECT json_agg(x.u ORDER BY x.created_at, x.id) FROM (
        SELECT l.id, l.created_at, {_brief_json("lu")} AS u
        FROM moments_like l JOIN {users} lu ON lu.id = l.user_id
        -- selectors.interactions_visible_to: all on my post; else mine and my friends'
        WHERE l.post_id = p.id AND (p.author_id = %(viewer)s OR l.user_id = %(viewer)s
                                    OR l.user_id IN (SELECT friend_id FROM friends))
        ORDER BY l.created_at, l.id LIMIT %(likes)s) x), '[]'),
    'comments', COALESCE(shown.comments, '[]'),
    'more_comments', COALESCE(shown.more, false)
)::text,
-- the author's "last N days" for this viewer (0: none), for the page cache's expiry (feed_cache)
CASE WHEN p.author_id = %(viewer)s THEN 0 ELSE COALESCE((
    SELECT m.visible_days FROM moments_momentsprofile m WHERE m.user_id = p.author_id), 0) END
FROM listed JOIN moments_post p ON p.id = listed.post_id JOIN {users} u ON u.id = p.author_id
LEFT JOIN LATERAL (
    -- one comment more than shown, to tell whether there are more
    SELECT json_agg(json_build_object(
               'id', x.id, 'post_id', p.id, 'author', x.a, 'text', x.text, 'reply_to_id', x.reply_to_id,
               'reply_to_user', x.r, 'created_at', x.at
           ) ORDER BY x.created_at, x.id) FILTER (WHERE x.n <= %(comments)s) AS comments,
           count(*) > %(comments)s AS more
    FROM (
        SELECT c.id, c.created_at, c.text, c.reply_to_id, {_brief_json("cu")} AS a,
               CASE WHEN c.reply_to_user_id IS NULL THEN NULL ELSE {_brief_json("ru")} END AS r,
               {_iso("c.created_at")} AS at, row_number() OVER (ORDER BY c.created_at, c.id) AS n
        FROM moments_comment c
        JOIN {users} cu ON cu.id = c.author_id
        LEFT JOIN {users} ru ON ru.id = c.reply_to_user_id
        WHERE c.post_id = p.id AND (p.author_id = %(viewer)s OR c.author_id = %(viewer)s
                                    OR c.author_id IN (SELECT friend_id FROM friends))
        ORDER BY c.created_at, c.id LIMIT %(comments)s + 1) x
) shown ON true
ORDER BY listed.created DESC, listed.post_id DESC
"""  # noqa: S608


# Planning the statement costs PostgreSQL more than running it (about 5 ms against 1.6 ms for a
# page of 20 posts: BENCHMARKS.md, "Moments"), and its text never changes: it is prepared once
# per database connection (superapp/core/prepared.py), unless MOMENTS_FEED_PREPARED is off.
@functools.cache
def _statement() -> PreparedStatement:
    return PreparedStatement("moments_feed", _sql(), enabled=lambda: settings.MOMENTS_FEED_PREPARED)


def _fetch_page(params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        _statement().execute(cursor, params)
        return cursor.fetchall()


def statement_name() -> str:
    """The prepared statement's name: it changes with the statement's text."""
    return _statement().name


@dataclass(frozen=True)
class FeedPage:
    posts: list[dict[str, Any]]
    next_position: tuple[datetime, int] | None  # (created, post_id) of the last entry, if more
    # When the first post shown leaves its author's "last N days" window (None: none will).
    expires_at: datetime | None = None


def expiry(windows: Iterable[tuple[datetime, int]]) -> datetime | None:
    """The first moment a post leaves its window: ``(timeline time, window days)`` pairs, 0 = none."""
    ends = [created + timedelta(days=days) for created, days in windows if days]
    return min(ends) if ends else None


def _with_urls(brief: dict[str, Any] | None) -> None:
    if brief is not None:
        brief["avatar_thumb_url"] = events.file_url(brief["avatar_thumb_url"])


def _post(text: str) -> dict[str, Any]:
    """A post as the statement built it, its file names turned into URLs (the storage's own)."""
    post = orjson.loads(text)
    _with_urls(post["author"])
    for item in post["media"]:
        item["url"] = events.file_url(item["url"])
        item["thumb_url"] = events.file_url(item["thumb_url"])
    for brief in post["likes"]:
        _with_urls(brief)
    for comment in post["comments"]:
        _with_urls(comment["author"])
        _with_urls(comment["reply_to_user"])
    return post


def feed_page(*, viewer_id: int, before: tuple[datetime, int] | None, limit: int) -> FeedPage:
    """One page of the home feed, newest first, strictly before ``before`` (a position returned
    with the previous page). One query."""
    now = timezone.now()
    params: dict[str, Any] = {
        "viewer": viewer_id,
        "before_created": before[0] if before else datetime.max.replace(tzinfo=UTC),
        "before_id": before[1] if before else 0,
        "limit": limit,
        "likes": settings.MOMENTS_LIKES_SHOWN,
        "comments": settings.MOMENTS_COMMENTS_SHOWN,
        **{f"cutoff_{days}": now - timedelta(days=days) for days in WINDOWS},
    }
    rows = _fetch_page(params)
    posts = [_post(text) for _created, _post_id, _more, text, _days in rows]
    next_position = (rows[-1][0], rows[-1][1]) if rows and rows[0][2] else None
    return FeedPage(
        posts=posts,
        next_position=next_position,
        expires_at=expiry((created, days) for created, _id, _more, _text, days in rows),
    )
