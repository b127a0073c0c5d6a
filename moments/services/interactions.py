"""Likes, comments and replies, and the "new interactions" notifications they make."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import Forbidden, NotFound, ValidationFailed

from .. import events, feed_cache, selectors
from ..models import Comment, Like, Notification, Post
from .posts import _announce_removed


def _lock_visible_post(user, post_id: int) -> Post:
    """The post, if ``user`` may see it, locked against deletion until commit (404 otherwise).

    ``FOR NO KEY UPDATE``: a concurrent delete waits for us, so a like or comment never points
    at a post deleted meanwhile (which would fail at commit).
    """
    post = (
        Post.objects.filter(pk=post_id)
        .filter(selectors.visible_to(user.pk))
        .select_for_update(no_key=True, of=("self",))
        .first()
    )
    if post is None:
        raise NotFound()
    return post


def _notify(notifications: list[Notification]) -> None:
    """Store the notifications and publish one ``moments.interaction`` to each recipient."""
    if not notifications:
        return
    Notification.objects.bulk_create(notifications)
    specs = []
    for item in notifications:
        stored = selectors.notification_get(notification_id=item.pk)
        specs.append(
            core_events.EventSpec(
                user_ids=[item.recipient_id],
                type=events.INTERACTION,
                data={
                    "notification": events.notification(stored),
                    "unread_count": selectors.unread_count(recipient_id=item.recipient_id),
                },
            )
        )
    core_events.publish_many(specs=specs)


@transaction.atomic
def like_add(*, user, post_id: int) -> Like:
    """Like a post one may see. Liking twice is one like (and one notification)."""
    post = _lock_visible_post(user, post_id)
    like, created = Like.objects.get_or_create(post=post, user=user)
    if created:
        feed_cache.changed(posts=[post.pk])
    if created and post.author_id != user.pk:
        _notify(
            [
                Notification(
                    recipient_id=post.author_id, actor=user, post=post, kind=Notification.Kind.LIKE, like=like
                )
            ]
        )
    return like


@transaction.atomic
def like_remove(*, user, post_id: int) -> None:
    """Take a like back (nothing happens when there was none); its notification goes too."""
    post = _lock_visible_post(user, post_id)
    like = Like.objects.filter(post=post, user=user).first()
    if like is None:
        return
    notified = list(Notification.objects.filter(like=like).values_list("pk", "recipient_id"))
    like.delete()
    feed_cache.changed(posts=[post.pk], removes=True)
    _announce_removed(notified)


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationFailed(fields={"text": [_("Write something.")]})
    if len(text) > settings.MOMENTS_COMMENT_MAX:
        raise ValidationFailed(
            fields={"text": [_("At most %(n)d characters.") % {"n": settings.MOMENTS_COMMENT_MAX}]}
        )
    return text


@transaction.atomic
def comment_create(*, user, post_id: int, text: str, reply_to_id: int | None = None) -> Comment:
    """Comment on a post one may see, or reply to a comment on it that one may see.

    Notified: the post's author (a comment on their post; a reply when it answers them), and the
    author of the comment answered, when they may see both the post and the reply (the reply's
    writer must be their friend: the same mutual-friend rule as for reading).
    """
    text = _clean_text(text)
    post = _lock_visible_post(user, post_id)
    reply_to = None
    if reply_to_id is not None:
        reply_to = (
            Comment.objects.filter(pk=reply_to_id, post=post)
            .filter(selectors.interactions_visible_to(user.pk, user_field="author_id"))
            .select_related("author")
            .first()
        )
        if reply_to is None:
            raise NotFound(_("The comment you answer is gone."), code="reply_to_not_found")
    comment = Comment.objects.create(
        post=post,
        author=user,
        text=text,
        reply_to=reply_to,
        reply_to_user=reply_to.author if reply_to else None,
    )
    feed_cache.changed(posts=[post.pk])

    notifications = []
    answered = reply_to.author_id if reply_to else None
    if post.author_id != user.pk:
        kind = Notification.Kind.REPLY if answered == post.author_id else Notification.Kind.COMMENT
        notifications.append(
            Notification(recipient_id=post.author_id, actor=user, post=post, kind=kind, comment=comment)
        )
    if (
        answered is not None
        and answered not in (user.pk, post.author_id)
        and account_selectors.are_friends(user_a=answered, user_b=user.pk)
        and selectors.post_is_visible(viewer_id=answered, post_id=post.pk)
    ):
        notifications.append(
            Notification(
                recipient_id=answered, actor=user, post=post, kind=Notification.Kind.REPLY, comment=comment
            )
        )
    _notify(notifications)
    return comment


@transaction.atomic
def comment_delete(*, user, comment_id: int) -> None:
    """Delete a comment: one's own anywhere, or any comment on one's own post.

    Someone else's comment that ``user`` can see is 403; one they cannot see is 404. Replies
    to it stay (they keep naming whom they answered).
    """
    comment = (
        Comment.objects.select_for_update(of=("self",)).select_related("post").filter(pk=comment_id).first()
    )
    if comment is None:
        raise NotFound()
    if user.pk not in (comment.author_id, comment.post.author_id):
        if selectors.comment_visible(viewer_id=user.pk, comment_id=comment_id) is None:
            raise NotFound()
        raise Forbidden(
            _("You can delete your own comments, and any comment on your posts."), code="not_author"
        )
    notified = list(Notification.objects.filter(comment=comment).values_list("pk", "recipient_id"))
    comment.delete()
    feed_cache.changed(posts=[comment.post_id], removes=True)
    _announce_removed(notified)


@transaction.atomic
def notifications_mark_read(*, user, up_to_id: int | None = None) -> int:
    """Mark the "new interactions" as read (all, or those up to ``up_to_id``); returns the unread
    count after. The user's other devices are told."""
    unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if up_to_id is not None:
        unread = unread.filter(pk__lte=up_to_id)
    unread.update(read_at=timezone.now())
    count = selectors.unread_count(recipient_id=user.pk)
    core_events.publish(
        user_ids=[user.pk], type=events.NOTIFICATIONS_READ, data={"up_to_id": up_to_id, "unread_count": count}
    )
    return count
