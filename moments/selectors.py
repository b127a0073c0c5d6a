"""Reads of Moments: who may see which post, the home feed, albums, comments, notifications.

Every rule of "who sees what" lives in :func:`visible_to`, one SQL condition used by every read
(feed, album, post, comments, notifications) and by the services before a like, comment or
report. It is evaluated at read time, so a change of settings, a block or an unfriending applies
at once, to old posts too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, Exists, OuterRef, Prefetch, Q, QuerySet, Value
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from accounts import selectors as account_selectors
from superapp.core.errors import NotFound

from . import events, feed_cache
from . import feed as feed_sql
from .feed import FeedPage
from .models import (
    Comment,
    FriendSetting,
    Like,
    Media,
    MomentsProfile,
    Notification,
    Post,
    PostAudience,
    Timeline,
    Visibility,
)


@dataclass(frozen=True)
class PostRefs:
    """Where a query finds the post's fields: on Post itself, or through a relation."""

    prefix: str  # path to the post's own columns ("" or "post__")
    post_id: str  # the post's id as an outer reference
    author_id: str
    created: str


ON_POST = PostRefs(prefix="", post_id="id", author_id="author_id", created="created_at")
# The timeline repeats the author and the time, so those conditions need no join.
ON_TIMELINE = PostRefs(prefix="post__", post_id="post_id", author_id="author_id", created="created")
VIA_POST_FK = PostRefs(
    prefix="post__", post_id="post_id", author_id="post__author_id", created="post__created_at"
)


def _too_old(refs: PostRefs, now: datetime) -> Exists:
    """The author limits what friends see to the last N days, and the post is older."""
    older = Q()
    for days in (w for w in MomentsProfile.Window.values if w):
        cutoff = Value(now - timedelta(days=days), output_field=DateTimeField())
        older |= Q(visible_days=days) & Q(GreaterThan(cutoff, OuterRef(refs.created)))
    return Exists(MomentsProfile.objects.filter(user_id=OuterRef(refs.author_id)).filter(older))


def visible_to(
    viewer_id: int, *, refs: PostRefs = ON_POST, feed: bool = False, now: datetime | None = None
) -> Q:
    """The condition "``viewer_id`` may see this post", for a query on Post (or via ``refs``).

    The author sees every post of theirs that staff did not hide. Anyone else, only when all hold:
    they are friends and neither blocked the other; the author did not choose "don't let them
    see my Moments"; the post is within the author's "friends may see the last N days"; the
    post is shared with all friends, or "share with" names the viewer, or "don't share with"
    does not. ``feed=True`` adds the viewer's own "hide their Moments from me" (home feed only).
    """
    now = now or timezone.now()
    p = refs.prefix
    author = refs.author_id
    in_audience = Exists(PostAudience.objects.filter(post_id=OuterRef(refs.post_id), user_id=viewer_id))
    shared = (
        Q(**{f"{p}visibility": Visibility.FRIENDS})
        | (Q(**{f"{p}visibility": Visibility.INCLUDE}) & Q(in_audience))
        | (Q(**{f"{p}visibility": Visibility.EXCLUDE}) & ~Q(in_audience))
    )
    hidden_from_viewer = FriendSetting.objects.filter(target_id=viewer_id, hide_my_posts=True).values(
        "owner_id"
    )
    other = (
        Q(**{f"{author}__in": account_selectors.friend_ids_query(user_id=viewer_id)})
        & ~Q(**{f"{author}__in": hidden_from_viewer})
        & shared
        & ~Q(_too_old(refs, now))
    )
    if feed:
        muted = FriendSetting.objects.filter(owner_id=viewer_id, hide_their_posts=True).values("target_id")
        other &= ~Q(**{f"{author}__in": muted})
    return Q(**{f"{p}hidden_at__isnull": True}) & (Q(**{author: viewer_id}) | other)


def interactions_visible_to(viewer_id: int, *, user_field: str) -> Q:
    """Likes and comments ``viewer_id`` may see on a post they can see: all of them on their own
    post; elsewhere only their own and those of their friends (WeChat's mutual-friend rule)."""
    return (
        Q(**{user_field: viewer_id})
        | Q(**{f"{user_field}__in": account_selectors.friend_ids_query(user_id=viewer_id)})
        | Q(post__author_id=viewer_id)
    )


def _post_prefetches(viewer_id: int, prefix: str = "") -> list[Prefetch]:
    likes = (
        Like.objects.filter(interactions_visible_to(viewer_id, user_field="user_id"))
        .select_related("user")
        .order_by("created_at", "id")
    )
    comments = (
        Comment.objects.filter(interactions_visible_to(viewer_id, user_field="author_id"))
        .select_related("author", "reply_to_user")
        .order_by("created_at", "id")
    )
    return [
        Prefetch(f"{prefix}media", queryset=Media.objects.order_by("position")),
        Prefetch(f"{prefix}likes", queryset=likes[: settings.MOMENTS_LIKES_SHOWN], to_attr="visible_likes"),
        # One more than shown, so the payload can say that there are more.
        Prefetch(
            f"{prefix}comments",
            queryset=comments[: settings.MOMENTS_COMMENTS_SHOWN + 1],
            to_attr="visible_comments",
        ),
    ]


def _liked_by(viewer_id: int, post_ref: str) -> Exists:
    return Exists(Like.objects.filter(post_id=OuterRef(post_ref), user_id=viewer_id))


def feed(*, viewer_id: int) -> QuerySet[Timeline]:
    """The home feed: timeline entries (newest first) whose post ``viewer_id`` may still see.

    Four queries for a page whatever its size: the entries joined with their posts and authors,
    then the media, the visible likes and the visible comments of the page's posts.
    """
    return (
        Timeline.objects.filter(user_id=viewer_id)
        .filter(visible_to(viewer_id, refs=ON_TIMELINE, feed=True))
        .select_related("post", "post__author")
        .annotate(liked_by_me=_liked_by(viewer_id, "post_id"))
        .prefetch_related(*_post_prefetches(viewer_id, prefix="post__"))
        .order_by("-created", "-post_id")
    )


def feed_page(*, viewer_id: int, before: tuple[datetime, int] | None, limit: int) -> FeedPage:
    """One page of the home feed, rendered: on PostgreSQL one SQL statement (``moments.feed``),
    elsewhere :func:`feed` (the reference, four queries). ``before``: the position the previous
    page returned."""
    if connection.vendor == "postgresql":
        return feed_sql.feed_page(viewer_id=viewer_id, before=before, limit=limit)
    return feed_page_orm(viewer_id=viewer_id, before=before, limit=limit)


def feed_page_orm(*, viewer_id: int, before: tuple[datetime, int] | None, limit: int) -> FeedPage:
    """:func:`feed_page` through the ORM: the reference the SQL version is tested against."""
    entries = feed(viewer_id=viewer_id)
    if before is not None:
        entries = entries.filter(Q(created__lt=before[0]) | Q(created=before[0], post_id__lt=before[1]))
    entries = list(entries[: limit + 1])
    posts = []
    for entry in entries[:limit]:
        entry.post.liked_by_me = entry.liked_by_me
        posts.append(events.post(entry.post, viewer_id=viewer_id))
    last = entries[limit - 1] if len(entries) > limit else None
    others = {e.post.author_id for e in entries[:limit]} - {viewer_id}
    windows = dict(MomentsProfile.objects.filter(user_id__in=others).values_list("user_id", "visible_days"))
    return FeedPage(
        posts=posts,
        next_position=(last.created, last.post_id) if last else None,
        expires_at=feed_sql.expiry((e.created, windows.get(e.post.author_id, 0)) for e in entries[:limit]),
    )


def feed_first_page(*, viewer_id: int, limit: int) -> feed_cache.RenderedPage:
    """The first page of the home feed, rendered (``results`` as JSON bytes): from the per-viewer
    cache when it is current (``moments.feed_cache``), else :func:`feed_page`."""
    return feed_cache.first_page(
        viewer_id=viewer_id,
        limit=limit,
        build=lambda: feed_page(viewer_id=viewer_id, before=None, limit=limit),
    )


def posts_visible(*, viewer_id: int) -> QuerySet[Post]:
    """Posts ``viewer_id`` may see, rendered-ready (author, media, visible interactions)."""
    return (
        Post.objects.filter(visible_to(viewer_id))
        .select_related("author")
        .annotate(liked_by_me=_liked_by(viewer_id, "id"))
        .prefetch_related(*_post_prefetches(viewer_id))
        .order_by("-created_at", "-id")
    )


def album(*, viewer, author_id: int) -> QuerySet[Post]:
    """One person's posts as ``viewer`` may see them (404 when their profile is not visible)."""
    author = account_selectors.user_get(user_id=author_id)
    if not account_selectors.profile_visible(viewer=viewer, target=author):
        raise NotFound()
    return posts_visible(viewer_id=viewer.pk).filter(author_id=author_id)


def post_get(*, viewer_id: int, post_id: int) -> Post:
    """One post as ``viewer_id`` may see it; 404 when it does not exist for them."""
    post = posts_visible(viewer_id=viewer_id).filter(pk=post_id).first()
    if post is None:
        raise NotFound()
    return post


def post_is_visible(*, viewer_id: int, post_id: int) -> bool:
    return Post.objects.filter(pk=post_id).filter(visible_to(viewer_id)).exists()


def comment_list(*, viewer_id: int, post_id: int) -> QuerySet[Comment]:
    """Comments of a post that ``viewer_id`` may see, oldest first (404 if the post is not visible)."""
    if not post_is_visible(viewer_id=viewer_id, post_id=post_id):
        raise NotFound()
    return (
        Comment.objects.filter(post_id=post_id)
        .filter(interactions_visible_to(viewer_id, user_field="author_id"))
        .select_related("author", "reply_to_user")
        .order_by("created_at", "id")
    )


def comment_visible(*, viewer_id: int, comment_id: int) -> Comment | None:
    """The comment if ``viewer_id`` may see it (on a post they may see), else None."""
    return (
        Comment.objects.filter(pk=comment_id)
        .filter(interactions_visible_to(viewer_id, user_field="author_id"))
        .filter(visible_to(viewer_id, refs=VIA_POST_FK))
        .select_related("author", "post")
        .first()
    )


def _notifications_visible(recipient_id: int) -> QuerySet[Notification]:
    # A notification shows while its post is visible to the recipient and, on someone else's
    # post, while the one who acted is still someone whose interactions the recipient may see.
    return Notification.objects.filter(recipient_id=recipient_id).filter(
        visible_to(recipient_id, refs=VIA_POST_FK)
        & (
            Q(post__author_id=recipient_id)
            | Q(actor_id__in=account_selectors.friend_ids_query(user_id=recipient_id))
        )
    )


def notification_list(*, recipient_id: int) -> QuerySet[Notification]:
    """The "new interactions" list, newest first (three queries a page)."""
    return (
        _notifications_visible(recipient_id)
        .select_related("actor", "post", "comment", "comment__author", "comment__reply_to_user")
        .prefetch_related(Prefetch("post__media", queryset=Media.objects.order_by("position")))
        .order_by("-id")
    )


def notification_get(*, notification_id: int) -> Notification:
    return (
        Notification.objects.select_related(
            "actor", "post", "comment", "comment__author", "comment__reply_to_user"
        )
        .prefetch_related(Prefetch("post__media", queryset=Media.objects.order_by("position")))
        .get(pk=notification_id)
    )


def unread_count(*, recipient_id: int) -> int:
    return _notifications_visible(recipient_id).filter(read_at__isnull=True).count()


def settings_get(*, user_id: int) -> MomentsProfile:
    profile = MomentsProfile.objects.filter(user_id=user_id).first()
    return profile or MomentsProfile(user_id=user_id)


def friend_setting_get(*, owner_id: int, target_id: int) -> FriendSetting:
    """What ``owner_id`` chose about the contact ``target_id`` (404 when not a contact)."""
    if not account_selectors.is_contact(user_id=owner_id, other_id=target_id):
        raise NotFound()
    setting = FriendSetting.objects.filter(owner_id=owner_id, target_id=target_id).first()
    return setting or FriendSetting(owner_id=owner_id, target_id=target_id)


def friend_setting_list(*, owner_id: int) -> QuerySet[FriendSetting]:
    """The friends about whom ``owner_id`` chose something (either switch on)."""
    return (
        FriendSetting.objects.filter(owner_id=owner_id)
        .filter(Q(hide_my_posts=True) | Q(hide_their_posts=True))
        .order_by("target_id")
    )
