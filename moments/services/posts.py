"""Posts: publish (with fan-out into the timelines), delete, staff hide and unhide."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import Forbidden, NotFound, ValidationFailed

from .. import events, feed_cache, selectors
from ..models import Media, Notification, Post, PostAudience, Report, Timeline, Visibility
from ..sql import friend_ids_sql
from .media import delete_files


@dataclass(frozen=True)
class LinkCard:
    """A shared link as the client shows it. The server never fetches these URLs."""

    url: str
    title: str
    description: str = ""
    thumb_url: str = ""


@dataclass(frozen=True)
class Place:
    name: str
    latitude: Decimal | None = None
    longitude: Decimal | None = None


def _invalid(field: str, message: str, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed(message, code=code, fields={field: [message]})


def _attach_media(author, media_ids: Sequence[int]) -> list[Media]:
    """Lock the author's unattached uploads, in the order given; 400 for anything else."""
    if len(set(media_ids)) != len(media_ids):
        raise _invalid("media_ids", _("The same upload appears twice."))
    found = {
        m.pk: m
        for m in Media.objects.select_for_update()
        .filter(owner=author, pk__in=media_ids, post__isnull=True)
        .order_by("pk")
    }
    if len(found) != len(media_ids):
        raise _invalid("media_ids", _("Unknown upload, or already used in a post."))
    items = [found[pk] for pk in media_ids]
    kinds = {m.kind for m in items}
    if (kinds == {Media.Kind.VIDEO} and len(items) > 1) or len(kinds) > 1:
        raise _invalid("media_ids", _("A post has up to 9 images or one video."))
    if len(items) > settings.MOMENTS_IMAGES_MAX:
        raise _invalid("media_ids", _("At most %(n)d images.") % {"n": settings.MOMENTS_IMAGES_MAX})
    return items


def _resolve_audience(
    author, visibility: str, user_ids: Iterable[int], tag_ids: Iterable[int], friends: set[int]
) -> set[int]:
    """The users named by "share with" / "don't share with": friends named, and the members of
    the author's tags as they are now (later tag edits do not change the post)."""
    user_ids, tag_ids = list(dict.fromkeys(user_ids)), list(dict.fromkeys(tag_ids))
    if visibility in (Visibility.FRIENDS, Visibility.PRIVATE):
        if user_ids or tag_ids:
            raise _invalid(
                "visibility", _("Friends and tags are chosen only to share with or not to share with.")
            )
        return set()
    if not user_ids and not tag_ids:
        raise _invalid("user_ids", _("Choose at least one friend or tag."))
    if set(user_ids) - friends:
        raise _invalid("user_ids", _("Only friends can be chosen."))
    own_tags = set(
        account_selectors.tag_list(owner=author).filter(pk__in=tag_ids).values_list("pk", flat=True)
    )
    if own_tags != set(tag_ids):
        raise _invalid("tag_ids", _("Unknown tag."))
    members = account_selectors.tag_member_ids(owner_id=author.pk, tag_ids=tag_ids) & friends
    return set(user_ids) | members


def _reader_count(visibility: str, audience: set[int], friends: set[int]) -> int:
    """How many timelines get the post: the author's, and those of the friends it is shared with."""
    if visibility == Visibility.PRIVATE:
        return 1
    if visibility == Visibility.INCLUDE:
        return 1 + len(friends & audience)
    if visibility == Visibility.EXCLUDE:
        return 1 + len(friends - audience)
    return 1 + len(friends)


_AUDIENCE = f"SELECT a.user_id FROM {PostAudience._meta.db_table} a WHERE a.post_id = %(post)s"  # noqa: S608
_READERS = {
    Visibility.FRIENDS: "TRUE",
    Visibility.PRIVATE: "FALSE",
    Visibility.INCLUDE: f"f.friend_id IN ({_AUDIENCE})",
    Visibility.EXCLUDE: f"f.friend_id NOT IN ({_AUDIENCE})",
}


def _timeline_fill(post: Post, *, author_only: bool = False) -> int:
    """Write the post into its readers' timelines: one ``INSERT ... SELECT`` from accounts'
    friend query (friends in a block are not friends), rows already there skipped. Returns how
    many rows were written. The database does the work: no per-reader Python object. The readers
    written to have their feed cache's version bumped (``feed_cache``: a new first page)."""
    readers = "FALSE" if author_only else _READERS[post.visibility]
    sql = f"""
        INSERT INTO {Timeline._meta.db_table} (user_id, post_id, author_id, created)
        SELECT r.friend_id, %(post)s, %(author)s, %(created)s FROM (
            SELECT %(author)s AS friend_id
            UNION
            SELECT f.friend_id FROM ({friend_ids_sql(param="author")}) f WHERE {readers}
        ) r
        WHERE TRUE  -- SQLite: without a WHERE, "ON CONFLICT" would parse as a join's ON
        ON CONFLICT (user_id, post_id) DO NOTHING
        RETURNING user_id
    """  # noqa: S608  (constants of this module and accounts' compiled query; values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"post": post.pk, "author": post.author_id, "created": post.created_at})
        readers = [row[0] for row in cursor.fetchall()]
    feed_cache.changed(viewers=readers)
    return len(readers)


@transaction.atomic
def post_publish(
    *,
    author,
    text: str = "",
    media_ids: Sequence[int] = (),
    link: LinkCard | None = None,
    location: Place | None = None,
    visibility: str = Visibility.FRIENDS,
    user_ids: Iterable[int] = (),
    tag_ids: Iterable[int] = (),
) -> Post:
    """Publish a post and put it in the timelines of everyone it is shared with.

    A post is text, up to 9 images, one video or a link card (text may go with any of them).
    Small audiences (up to ``MOMENTS_FANOUT_INLINE_MAX`` readers) get the post in this
    transaction; larger ones from a Celery task started after commit (the author's own timeline
    is always written here).
    """
    text = (text or "").strip()
    if len(text) > settings.MOMENTS_TEXT_MAX:
        raise _invalid("text", _("At most %(n)d characters.") % {"n": settings.MOMENTS_TEXT_MAX})
    if visibility not in Visibility.values:
        raise _invalid("visibility", _("One of: %(s)s.") % {"s": ", ".join(Visibility.values)})
    media = _attach_media(author, list(media_ids)) if media_ids else []
    if link is not None and media:
        raise _invalid("link", _("A link card cannot go with images or a video."))
    if not text and not media and link is None:
        raise ValidationFailed(
            _("Write something, add images or a video, or share a link."), code="empty_post"
        )
    if media:
        kind = Post.Kind.VIDEO if media[0].kind == Media.Kind.VIDEO else Post.Kind.IMAGES
    else:
        kind = Post.Kind.LINK if link is not None else Post.Kind.TEXT

    friends = account_selectors.friend_ids(user_id=author.pk)
    audience = _resolve_audience(author, visibility, user_ids, tag_ids, friends)
    now = timezone.now()
    post = Post.objects.create(
        author=author,
        kind=kind,
        text=text,
        visibility=visibility,
        link_url=link.url if link else "",
        link_title=link.title if link else "",
        link_description=link.description if link else "",
        link_thumb_url=link.thumb_url if link else "",
        location_name=location.name if location else "",
        latitude=location.latitude if location else None,
        longitude=location.longitude if location else None,
        created_at=now,
    )
    for position, item in enumerate(media):
        item.post, item.position = post, position
    Media.objects.bulk_update(media, ["post", "position"])
    PostAudience.objects.bulk_create([PostAudience(post=post, user_id=uid) for uid in sorted(audience)])

    if _reader_count(visibility, audience, friends) <= settings.MOMENTS_FANOUT_INLINE_MAX:
        _timeline_fill(post)
        post.fanned_out_at = now
        post.save(update_fields=["fanned_out_at"])
    else:
        from ..tasks import fan_out_post

        _timeline_fill(post, author_only=True)
        transaction.on_commit(lambda: fan_out_post.delay(post.pk))

    core_events.publish(
        user_ids=[author.pk], type=events.POST_CREATED, data={"post": events.post(post, viewer_id=author.pk)}
    )
    return post


def post_fan_out(*, post_id: int) -> int:
    """Write the post into every reader's timeline (the Celery task's body); returns the rows
    written now. Idempotent: rows already there are skipped, so a redelivered task is harmless.

    Readers are the friends of now (the read path re-checks visibility anyway). A post deleted
    meanwhile ends the work quietly.
    """
    post = Post.objects.filter(pk=post_id).first()
    if post is None:
        return 0
    try:
        with transaction.atomic():
            written = _timeline_fill(post)
    except IntegrityError:
        # The post was deleted after we read it: the foreign key refuses the rows.
        if not Post.objects.filter(pk=post_id).exists():
            return 0
        raise
    Post.objects.filter(pk=post_id, fanned_out_at__isnull=True).update(fanned_out_at=timezone.now())
    return written


def _announce_removed(notifications: Iterable[tuple[int, int]]) -> None:
    """Tell each recipient which of their notifications went away, with their new unread count.

    ``notifications``: ``(notification_id, recipient_id)`` pairs, already deleted or hidden.
    Call inside the transaction, after the change.
    """
    by_recipient: dict[int, list[int]] = {}
    for notification_id, recipient_id in notifications:
        by_recipient.setdefault(recipient_id, []).append(notification_id)
    core_events.publish_many(
        specs=[
            core_events.EventSpec(
                user_ids=[recipient_id],
                type=events.INTERACTION_REMOVED,
                data={
                    "notification_ids": sorted(ids),
                    "unread_count": selectors.unread_count(recipient_id=recipient_id),
                },
            )
            for recipient_id, ids in sorted(by_recipient.items())
        ]
    )


@transaction.atomic
def post_delete(*, user, post_id: int) -> None:
    """Delete one's own post: it leaves every feed, album and notification list at once."""
    post = Post.objects.select_for_update().filter(pk=post_id).first()
    if post is None or (
        post.author_id != user.pk and not selectors.post_is_visible(viewer_id=user.pk, post_id=post_id)
    ):
        raise NotFound()
    if post.author_id != user.pk:
        raise Forbidden(_("Only the author can delete a post."), code="not_author")
    notified = list(Notification.objects.filter(post_id=post_id).values_list("pk", "recipient_id"))
    files = [
        name for pair in Media.objects.filter(post_id=post_id).values_list("file", "thumb") for name in pair
    ]
    post.delete()
    feed_cache.changed(posts=[post_id], removes=True)
    transaction.on_commit(lambda: delete_files(files))
    core_events.publish(user_ids=[user.pk], type=events.POST_DELETED, data={"post_id": post_id})
    _announce_removed(notified)


@transaction.atomic
def post_hide(*, post_id: int, by, reason: str = "") -> Post:
    """Staff: hide a post from every feed, album and notification list, its author's too (the
    author is told, with the reason, and may still delete it). Open reports of it are closed as
    acted on. Hiding a hidden post changes nothing."""
    post = Post.objects.select_for_update().filter(pk=post_id).first()
    if post is None:
        raise NotFound()
    if post.hidden_at is not None:
        return post
    post.hidden_at = timezone.now()
    post.hidden_reason = reason[:200]
    post.save(update_fields=["hidden_at", "hidden_reason"])
    feed_cache.changed(posts=[post_id], removes=True)
    Report.objects.filter(post_id=post_id, status=Report.Status.OPEN).update(
        status=Report.Status.HIDDEN, reviewed_at=post.hidden_at, reviewed_by=by
    )
    core_events.publish(
        user_ids=[post.author_id],
        type=events.POST_HIDDEN,
        data={"post_id": post.pk, "reason": post.hidden_reason},
    )
    _announce_removed(Notification.objects.filter(post_id=post_id).values_list("pk", "recipient_id"))
    return post


@transaction.atomic
def post_unhide(*, post_id: int, by) -> Post:
    """Staff: show a hidden post again."""
    post = Post.objects.select_for_update().filter(pk=post_id).first()
    if post is None:
        raise NotFound()
    if post.hidden_at is None:
        return post
    post.hidden_at = None
    post.hidden_reason = ""
    post.save(update_fields=["hidden_at", "hidden_reason"])
    # Back in every timeline that has it: those first pages may now show it.
    readers = Timeline.objects.filter(post_id=post_id).values_list("user_id", flat=True)
    feed_cache.changed(posts=[post_id], viewers=list(readers))
    core_events.publish(user_ids=[post.author_id], type=events.POST_UNHIDDEN, data={"post_id": post.pk})
    return post
