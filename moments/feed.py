"""The home feed's read path on PostgreSQL: one SQL statement per page, rendered by the builders.

The feed is the hottest read of Moments. Built with the ORM (``selectors.feed``: the page, then
media, likes and comments prefetched) a page costs about 35 ms of Python, two thirds of it
assembling and compiling the visibility condition and four queries, and instantiating some 300
model objects. Here the same page is one statement with constant text: PostgreSQL picks the
page (the rule of ``selectors.visible_to``, written out below; who is a friend comes from
accounts' own compiled query, see ``moments.sql``) and aggregates each post's media, the likes
and comments this viewer may see, and ``liked_by_me`` into JSON; Python only turns file names
into URLs and assembles the payload through ``moments.events.post_values``. A change to
``visible_to`` must be made here too: the equivalence test fails until it is.

``selectors.feed`` stays the reference: it serves other databases (the embedded SQLite default)
and ``tests/moments/test_feed_sql.py`` checks that both give the same pages, payloads included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from . import events
from .models import MomentsProfile, Visibility
from .sql import friend_ids_sql

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOWS = [days for days in MomentsProfile.Window.values if days]


def _user_json(alias: str) -> str:
    return f"json_build_array({alias}.id, {alias}.handle, {alias}.display_name, NULLIF({alias}.avatar_thumb, ''))"


def _micros(column: str) -> str:
    # Exact (numeric) microseconds since the epoch: Python rebuilds the same datetime.
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


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
      AND (t.author_id = %(viewer)s OR (
            t.author_id IN (SELECT friend_id FROM friends)
        AND t.author_id NOT IN (
            SELECT s.owner_id FROM moments_friendsetting s WHERE s.target_id = %(viewer)s AND s.hide_my_posts)
        AND t.author_id NOT IN (
            SELECT s.target_id FROM moments_friendsetting s WHERE s.owner_id = %(viewer)s AND s.hide_their_posts)
        AND (p.visibility = '{Visibility.FRIENDS}'
            OR (p.visibility = '{Visibility.INCLUDE}' AND EXISTS (
                SELECT 1 FROM moments_postaudience a WHERE a.post_id = p.id AND a.user_id = %(viewer)s))
            OR (p.visibility = '{Visibility.EXCLUDE}' AND NOT EXISTS (
                SELECT 1 FROM moments_postaudience a WHERE a.post_id = p.id AND a.user_id = %(viewer)s)))
        AND NOT EXISTS (
            SELECT 1 FROM moments_momentsprofile m WHERE m.user_id = t.author_id AND ({_TOO_OLD}))
      ))
    ORDER BY t.created DESC, t.post_id DESC
    LIMIT %(limit)s
)
SELECT
    p.id, p.author_id, p.kind, p.text, p.visibility, {_micros("p.created_at")}, page.created,
    p.link_url, p.link_title, p.link_description, p.link_thumb_url,
    p.location_name, p.latitude::float8, p.longitude::float8,
    {_user_json("u")},
    (SELECT json_agg(json_build_array(m.id, m.kind, m.file, NULLIF(m.thumb, ''), m.width, m.height, m.size,
                                      m.content_type) ORDER BY m.position)
     FROM moments_media m WHERE m.post_id = p.id),
    EXISTS (SELECT 1 FROM moments_like l WHERE l.post_id = p.id AND l.user_id = %(viewer)s),
    (SELECT json_agg(x.u ORDER BY x.created_at, x.id) FROM (
        SELECT l.id, l.created_at, {_user_json("lu")} AS u
        FROM moments_like l JOIN {users} lu ON lu.id = l.user_id
        -- selectors.interactions_visible_to: all on my post; else mine and my friends'
        WHERE l.post_id = p.id AND (p.author_id = %(viewer)s OR l.user_id = %(viewer)s
                                    OR l.user_id IN (SELECT friend_id FROM friends))
        ORDER BY l.created_at, l.id LIMIT %(likes)s) x),
    (SELECT json_agg(json_build_array(x.id, x.a, x.text, x.reply_to_id, x.r, x.at) ORDER BY x.created_at, x.id)
     FROM (
        SELECT c.id, c.created_at, c.text, c.reply_to_id, {_user_json("cu")} AS a,
               CASE WHEN c.reply_to_user_id IS NULL THEN NULL ELSE {_user_json("ru")} END AS r,
               {_micros("c.created_at")} AS at
        FROM moments_comment c
        JOIN {users} cu ON cu.id = c.author_id
        LEFT JOIN {users} ru ON ru.id = c.reply_to_user_id
        WHERE c.post_id = p.id AND (p.author_id = %(viewer)s OR c.author_id = %(viewer)s
                                    OR c.author_id IN (SELECT friend_id FROM friends))
        ORDER BY c.created_at, c.id LIMIT %(comments)s) x)
FROM page JOIN moments_post p ON p.id = page.post_id JOIN {users} u ON u.id = p.author_id
ORDER BY page.created DESC, page.post_id DESC
"""  # noqa: S608


@dataclass(frozen=True)
class FeedPage:
    posts: list[dict[str, Any]]
    next_position: tuple[datetime, int] | None  # (created, post_id) of the last entry, if more


def _when(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _brief(values) -> dict[str, Any]:
    return events.user_brief_values(*values)


def _media(m) -> dict[str, Any]:
    item_id, kind, file, thumb, width, height, size, content_type = m
    return {
        "id": item_id,
        "kind": kind,
        "url": events.file_url(file),
        "thumb_url": events.file_url(thumb),
        "width": width,
        "height": height,
        "size": size,
        "content_type": content_type,
    }


def _comment(c, post_id: int) -> dict[str, Any]:
    comment_id, author, text, reply_to_id, reply_to_user, created = c
    return {
        "id": comment_id,
        "post_id": post_id,
        "author": _brief(author),
        "text": text,
        "reply_to_id": reply_to_id,
        "reply_to_user": _brief(reply_to_user) if reply_to_user else None,
        "created_at": events.iso(_when(created)),
    }


def feed_page(*, viewer_id: int, before: tuple[datetime, int] | None, limit: int) -> FeedPage:
    """One page of the home feed, newest first, strictly before ``before`` (a position returned
    with the previous page). One query."""
    now = timezone.now()
    params: dict[str, Any] = {
        "viewer": viewer_id,
        "before_created": before[0] if before else datetime.max.replace(tzinfo=UTC),
        "before_id": before[1] if before else 0,
        "limit": limit + 1,
        "likes": settings.MOMENTS_LIKES_SHOWN,
        "comments": settings.MOMENTS_COMMENTS_SHOWN + 1,
        **{f"cutoff_{days}": now - timedelta(days=days) for days in WINDOWS},
    }
    with connection.cursor() as cursor:
        cursor.execute(_sql(), params)
        rows = cursor.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    posts = []
    for (post_id, author_id, kind, text, visibility, created, _entry, link_url, link_title, link_description,
         link_thumb_url, place_name, latitude, longitude, author, media, liked, likes, comments) in rows:  # fmt: skip
        posts.append(
            events.post_values(
                post_id=post_id,
                author_id=author_id,
                viewer_id=viewer_id,
                author=_brief(author),
                kind=kind,
                text=text,
                visibility=visibility,
                created_at=_when(created),
                media=[_media(m) for m in media or ()],
                link=events.link_card(kind, link_url, link_title, link_description, link_thumb_url),
                location=events.place(place_name, latitude, longitude),
                liked_by_me=liked,
                likes=[_brief(u) for u in likes or ()],
                comments=[_comment(c, post_id) for c in comments or ()],
            )
        )
    next_position = (rows[-1][6], rows[-1][0]) if more and rows else None
    return FeedPage(posts=posts, next_position=next_position)
