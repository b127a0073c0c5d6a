"""Messaging tables: conversations (direct and group), members, messages, attachments.

Ordering and sync rest on two sequences:

* ``Conversation.last_seq``: each conversation numbers its messages 1, 2, 3, ... under a row
  lock on the conversation (``UPDATE ... SET last_seq = last_seq + 1``), so a conversation's
  history has no gap and no two messages share a number;
* the per-user event stream of ``superapp.core.events``: every message, recall, receipt and
  membership change a user must see is stored there too, with that user's cursor.

Unread counts cost no write per recipient: unread = ``conversation.last_seq -
member.last_read_seq``, less the messages after the mark hidden from the member
(``selectors.hidden_unread``); sending a message moves the sender's own read mark, so one's own
messages never count.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Q

USER = settings.AUTH_USER_MODEL


class Conversation(models.Model):
    """A direct chat between two users (one per pair) or a group."""

    class Kind(models.TextChoices):
        DIRECT = "direct"
        GROUP = "group"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Direct only: the pair, smaller id first (one conversation per pair, by constraint).
    user_low = models.ForeignKey(USER, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    user_high = models.ForeignKey(USER, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    # Group only.
    name = models.CharField(max_length=64, blank=True)
    avatar = models.ImageField(upload_to="groups/", blank=True)
    avatar_thumb = models.ImageField(upload_to="groups/", blank=True)
    announcement = models.TextField(blank=True)
    announcement_at = models.DateTimeField(null=True, blank=True)
    owner = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    invite_approval = models.BooleanField(default=False, help_text="Invitations by members need approval.")
    invite_link_version = models.PositiveIntegerField(default=1, help_text="Bump to revoke every link.")
    member_count = models.PositiveIntegerField(default=0)
    # The message sequence: the last number handed out.
    last_seq = models.BigIntegerField(default=0)
    last_mention_all_seq = models.BigIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dissolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_low", "user_high"],
                condition=Q(kind="direct"),
                name="messaging_one_direct_per_pair",
            ),
            models.CheckConstraint(
                condition=Q(kind="group")
                | Q(user_low__isnull=False, user_high__isnull=False, user_low__lt=F("user_high")),
                name="messaging_direct_pair_ordered",
            ),
            models.CheckConstraint(condition=Q(last_seq__gte=0), name="messaging_conversation_seq_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} conversation {self.pk}"

    @property
    def is_group(self) -> bool:
        return self.kind == self.Kind.GROUP


class Member(models.Model):
    """A user's place in a conversation: role, read mark, per-member settings.

    A member who left or was removed keeps the row (``left_at`` set): they no longer read or
    send, and a later re-join starts a new visible range (``joined_seq``).
    """

    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="messaging_memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    # History before this sequence is not shown to the member (a group's newcomers start here).
    joined_seq = models.BigIntegerField(default=0)
    last_read_seq = models.BigIntegerField(default=0)
    last_mention_seq = models.BigIntegerField(default=0)
    muted = models.BooleanField(default=False)
    pinned = models.BooleanField(default=False)
    nickname = models.CharField(max_length=32, blank=True, help_text="My name in this group.")
    joined_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="messaging_member_unique"),
            models.CheckConstraint(condition=Q(last_read_seq__gte=0), name="messaging_member_read_gte_0"),
        ]
        indexes = [models.Index(fields=["user", "left_at"], name="messaging_member_user_active")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.conversation_id} ({self.role})"

    @property
    def active(self) -> bool:
        return self.left_at is None

    @property
    def is_manager(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Message(models.Model):
    """One message in one conversation, numbered by ``seq``. Recall blanks it, never deletes it."""

    class Kind(models.TextChoices):
        TEXT = "text"
        IMAGE = "image"
        VIDEO = "video"
        VOICE = "voice"
        FILE = "file"
        STICKER = "sticker"
        LOCATION = "location"
        CONTACT = "contact"
        SYSTEM = "system"
        # Written by payments only (messaging.services.payment_message_post), never by a client.
        TRANSFER = "transfer"
        RED_PACKET = "red_packet"

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (conversation, seq) leads with it.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    seq = models.BigIntegerField()
    sender = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # NULL, not "": the unique constraint (sender, client_msg_id) must skip server-written rows.
    client_msg_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField(blank=True)
    content = models.JSONField(default=dict, blank=True, help_text="Kind-specific fields.")
    reply_to = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    mentions = models.JSONField(default=list, blank=True)
    mention_all = models.BooleanField(default=False)
    forwarded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    recalled_at = models.DateTimeField(null=True, blank=True)
    recalled_by = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # PostgreSQL full-text search: written with the row (see services.search_document), indexed by
    # a GIN index created in migration 0002 on PostgreSQL only. Empty on SQLite (search falls back).
    search = SearchVectorField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="messaging_message_seq_unique"),
            models.UniqueConstraint(
                fields=["sender", "client_msg_id"],
                condition=Q(client_msg_id__isnull=False),
                name="messaging_message_client_id_unique",
            ),
            models.CheckConstraint(condition=Q(seq__gt=0), name="messaging_message_seq_gt_0"),
        ]
        indexes = [
            # A payment's notice lines only (system lines about a bubble, ``content.message_seq``):
            # a newcomer's unread count subtracts those it cannot see (selectors.hidden_unread)
            # without reading every unread message. Other messages add no entry.
            models.Index(
                fields=["conversation", "seq"],
                condition=Q(kind="system", content__has_key="message_seq"),
                name="messaging_message_notice",
            ),
        ]

    def __str__(self) -> str:
        return f"message {self.conversation_id}#{self.seq}"

    @property
    def recalled(self) -> bool:
        return self.recalled_at is not None


class HiddenMessage(models.Model):
    """ "Delete for me": the user no longer sees this message; everyone else still does."""

    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    # The message's place, copied with the row: unread counts subtract a user's hidden messages
    # after each read mark by a range of this index (selectors.hidden_unread), not by reading all
    # of the user's rows or all the unread messages.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+", db_index=False)
    seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "message"], name="messaging_hidden_unique")]
        indexes = [models.Index(fields=["user", "conversation", "seq"], name="messaging_hidden_user_seq")]

    def __str__(self) -> str:
        return f"{self.message_id} hidden for {self.user_id}"


def _attachment_path(instance: Attachment, filename: str) -> str:
    # Unguessable names: media URLs are served without authentication (proxy or object storage).
    return f"chat/{instance.owner_id}/{uuid.uuid4().hex}/{filename}"


class Attachment(models.Model):
    """An uploaded file, waiting for (or used by) messages. Only its owner may attach it."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        VIDEO = "video"
        VOICE = "voice"
        FILE = "file"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    file = models.FileField(upload_to=_attachment_path, max_length=300)
    thumb = models.FileField(upload_to=_attachment_path, max_length=300, blank=True)
    name = models.CharField(max_length=200, blank=True)
    mime = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds (voice, video).")
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True, help_text="First sent in a message.")

    def __str__(self) -> str:
        return f"{self.kind} {self.pk}"


class JoinRequest(models.Model):
    """A request to bring someone into a group that needs approval (owner approval mode)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        DECLINED = "declined"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="join_requests")
    user = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="+")
    inviter = models.ForeignKey(USER, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    via_link = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "user"],
                condition=Q(status="pending"),
                name="messaging_one_pending_join",
            )
        ]

    def __str__(self) -> str:
        return f"join {self.user_id} -> {self.conversation_id} ({self.status})"


class UserSettings(models.Model):
    """A user's messaging preferences, and the push notifier's bookmark."""

    class Visibility(models.TextChoices):
        EVERYONE = "everyone"  # anyone sharing a conversation with me
        FRIENDS = "friends"
        NOBODY = "nobody"

    user = models.OneToOneField(USER, on_delete=models.CASCADE, primary_key=True, related_name="+")
    show_preview = models.BooleanField(
        default=True, help_text="Message text and sender in push notifications."
    )
    allow_strangers = models.BooleanField(default=False, help_text="Direct messages from non-friends.")
    presence_visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=Visibility.FRIENDS
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The newest message id already covered by a push notification (see messaging.notifications).
    last_pushed_message_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"messaging settings of {self.user_id}"
