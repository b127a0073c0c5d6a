"""Moments tables: posts and their media, who a post was shared with, the per-user timeline,
likes, comments, the "new interactions" list, reports, and the who-sees-what settings.

Who may see a post is decided at read time (``moments.selectors``) from these rows and the
contacts of ``accounts`` (friendships, blocks); the only thing fixed when a post is made is its
audience for "share with" / "don't share with" (:class:`PostAudience`, tags resolved then).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

USER = settings.AUTH_USER_MODEL


class Visibility(models.TextChoices):
    FRIENDS = "friends", _("All friends")
    PRIVATE = "private", _("Private")
    INCLUDE = "include", _("Share with")
    EXCLUDE = "exclude", _("Don't share with")


class Post(models.Model):
    """One Moments post: text, up to 9 images or one video or a link card, optional place."""

    class Kind(models.TextChoices):
        TEXT = "text"
        IMAGES = "images"
        VIDEO = "video"
        LINK = "link"

    author = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="moments_posts")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.TextField(blank=True)
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.FRIENDS)
    # Link card: what the client shows; the server never fetches any of these URLs.
    link_url = models.CharField(max_length=2000, blank=True)
    link_title = models.CharField(max_length=200, blank=True)
    link_description = models.CharField(max_length=500, blank=True)
    link_thumb_url = models.CharField(max_length=2000, blank=True)
    location_name = models.CharField(max_length=100, blank=True)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField()
    # Staff moderation: a hidden post disappears from every feed, album and interaction.
    hidden_at = models.DateTimeField(null=True, blank=True)
    hidden_reason = models.CharField(max_length=200, blank=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True, help_text="When every timeline had it.")

    class Meta:
        indexes = [
            models.Index(F("author"), F("created_at").desc(), F("id").desc(), name="moments_post_album")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(latitude__isnull=True) | Q(latitude__gte=-90, latitude__lte=90),
                name="moments_post_latitude_range",
            ),
            models.CheckConstraint(
                condition=Q(longitude__isnull=True) | Q(longitude__gte=-180, longitude__lte=180),
                name="moments_post_longitude_range",
            ),
        ]

    def __str__(self) -> str:
        return f"post {self.pk} by {self.author_id}"


class PostAudience(models.Model):
    """For "share with" (``include``) / "don't share with" (``exclude``) posts: the users named,
    directly or through a tag, resolved when the post was made (later tag edits change nothing)."""

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="audience")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "user"], name="moments_audience_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} in audience of post {self.post_id}"


class Media(models.Model):
    """An uploaded image or video: uploaded first, attached to a post when the post is made.

    Unattached uploads older than ``MOMENTS_ORPHAN_MEDIA_HOURS`` are purged by Celery beat.
    """

    class Kind(models.TextChoices):
        IMAGE = "image"
        VIDEO = "video"

    owner = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="moments_media")
    post = models.ForeignKey(Post, on_delete=models.CASCADE, null=True, blank=True, related_name="media")
    position = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    file = models.FileField(upload_to="moments/%Y/%m/")
    thumb = models.ImageField(
        upload_to="moments/%Y/%m/", blank=True, help_text="Image thumbnail or video cover."
    )
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    size = models.PositiveBigIntegerField(default=0)
    content_type = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]
        indexes = [
            models.Index(fields=["post", "position"], name="moments_media_post"),
            models.Index(fields=["created_at"], condition=Q(post__isnull=True), name="moments_media_orphan"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} of {self.owner_id}"


class Timeline(models.Model):
    """Fan-out on write: one row per (reader, post) for every post that may reach the reader's
    home feed. Rows are a candidate list only; the read path re-checks who may see what."""

    # No index of its own for ``user``: the unique (user, post) and the feed index lead with it.
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+", db_index=False)
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="+")
    author = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(help_text="The post's creation time (the feed's order).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "post"], name="moments_timeline_unique")]
        indexes = [
            models.Index(F("user"), F("created").desc(), F("post").desc(), name="moments_timeline_feed"),
        ]

    def __str__(self) -> str:
        return f"post {self.post_id} in timeline of {self.user_id}"


class Like(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="likes")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "user"], name="moments_like_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} likes post {self.post_id}"


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    text = models.TextField()
    # A reply keeps naming whom it answered after that comment is deleted.
    reply_to = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reply_to_user = models.ForeignKey(USER, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["post", "created_at", "id"], name="moments_comment_post")]

    def __str__(self) -> str:
        return f"comment {self.pk} on post {self.post_id}"


class Notification(models.Model):
    """A like, comment or reply that concerns ``recipient`` (the "new interactions" list).

    Deleting the like or comment deletes the notification with it.
    """

    class Kind(models.TextChoices):
        LIKE = "like"
        COMMENT = "comment"
        REPLY = "reply"

    recipient = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    like = models.ForeignKey(Like, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(F("recipient"), F("id").desc(), name="moments_notification_list"),
            models.Index(
                fields=["recipient"], condition=Q(read_at__isnull=True), name="moments_notification_unread"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="like") & Q(like__isnull=False) & Q(comment__isnull=True))
                | (Q(kind__in=["comment", "reply"]) & Q(comment__isnull=False) & Q(like__isnull=True)),
                name="moments_notification_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor_id} for {self.recipient_id}"


class Report(models.Model):
    """A user's report of a post, reviewed by staff in the admin."""

    class Reason(models.TextChoices):
        SPAM = "spam", _("Spam or advertising")
        ABUSE = "abuse", _("Harassment or abuse")
        SEXUAL = "sexual", _("Sexual content")
        VIOLENCE = "violence", _("Violence")
        FRAUD = "fraud", _("Fraud")
        ILLEGAL = "illegal", _("Illegal content")
        OTHER = "other", _("Other")

    class Status(models.TextChoices):
        OPEN = "open"
        HIDDEN = "hidden", _("Post hidden")
        DISMISSED = "dismissed"

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=10, choices=Reason.choices)
    note = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["post", "reporter"], name="moments_report_once")]
        indexes = [models.Index(fields=["status", "created_at"], name="moments_report_queue")]

    def __str__(self) -> str:
        return f"report {self.pk} of post {self.post_id}"


class MomentsProfile(models.Model):
    """A user's own Moments settings. No row means the defaults."""

    class Window(models.IntegerChoices):
        ALL = 0, _("All")
        DAYS_3 = 3, _("Last 3 days")
        MONTH_1 = 30, _("Last month")
        MONTHS_6 = 180, _("Last 6 months")

    user = models.OneToOneField(USER, on_delete=models.CASCADE, primary_key=True, related_name="+")
    # How far back friends may see my posts (days; 0 = everything). I always see all of mine.
    visible_days = models.PositiveSmallIntegerField(choices=Window.choices, default=Window.ALL)

    def __str__(self) -> str:
        return f"moments settings of {self.user_id}"


class FriendSetting(models.Model):
    """What ``owner`` chose about one friend, ``target``.

    ``hide_my_posts``: "don't let them see my Moments" (feed, album, interactions).
    ``hide_their_posts``: "hide their Moments from me" (my home feed only; their album stays).
    """

    owner = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    hide_my_posts = models.BooleanField(default=False)
    hide_their_posts = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "target"], name="moments_friend_setting_unique"),
            models.CheckConstraint(condition=~Q(owner=F("target")), name="moments_friend_setting_not_self"),
        ]
        indexes = [
            models.Index(fields=["target"], condition=Q(hide_my_posts=True), name="moments_hidden_from"),
        ]

    def __str__(self) -> str:
        return f"{self.owner_id} about {self.target_id}"
