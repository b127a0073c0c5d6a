"""Accounts tables: users, verification codes, login sessions, contacts."""

from __future__ import annotations

import uuid

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

HANDLE_REGEX = r"^[a-z][a-z0-9_]{2,19}$"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, handle: str, password: str | None = None, **fields) -> User:
        user = self.model(handle=handle.lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, handle: str, password: str | None = None, **fields) -> User:
        fields.setdefault("display_name", handle)
        fields.update(is_staff=True, is_superuser=True, is_verified=True)
        return self.create_user(handle, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Signs up with a phone or an email; known to others by a public handle."""

    handle = models.CharField(max_length=20, unique=True, help_text="Lower case; public.")
    phone = models.CharField(max_length=20, unique=True, null=True, blank=True)
    email = models.EmailField(unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=64)
    avatar = models.ImageField(upload_to="avatars/", blank=True)
    avatar_thumb = models.ImageField(upload_to="avatars/", blank=True)
    region = models.CharField(max_length=64, blank=True)
    bio = models.CharField(max_length=200, blank=True)
    # Privacy (WeChat: "Add me by ...", "Verify friend requests").
    findable_by_phone = models.BooleanField(default=True)
    findable_by_handle = models.BooleanField(default=True)
    friend_requests_need_approval = models.BooleanField(default=True)

    is_verified = models.BooleanField(default=False, help_text="Proved the phone or email with a code.")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    handle_changed_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "handle"
    REQUIRED_FIELDS = ["display_name"]

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(phone__isnull=False) | Q(email__isnull=False) | Q(is_staff=True),
                name="user_has_phone_or_email",
            ),
        ]

    def __str__(self) -> str:
        return f"@{self.handle}"


class VerificationCode(models.Model):
    """A one-time code sent to prove a phone or an email. Only its hash is stored."""

    class Channel(models.TextChoices):
        PHONE = "phone"
        EMAIL = "email"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="verification_codes")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    destination = models.CharField(max_length=254)
    code_hash = models.CharField(max_length=128)
    attempts = models.PositiveSmallIntegerField(default=0)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"code for {self.user_id} via {self.channel}"


class LoginSession(models.Model):
    """One login on one device: the family of refresh tokens rotated from it.

    Only the newest refresh token (``refresh_jti``) is valid; presenting an older one means it
    was stolen or replayed, and ends the session. Revoking the session invalidates its access
    tokens at once (they name it in their ``sid`` claim) and closes its sockets.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="login_sessions")
    device_name = models.CharField(max_length=100, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    refresh_jti = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"session {self.id} of {self.user_id}"


class FriendRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        DECLINED = "declined"

    from_user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sent_friend_requests")
    to_user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="received_friend_requests")
    note = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=16, default="search")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["from_user", "to_user"],
                condition=Q(status="pending"),
                name="one_pending_request_per_pair",
            ),
            models.CheckConstraint(condition=~Q(from_user=F("to_user")), name="request_not_to_self"),
        ]
        indexes = [models.Index(fields=["to_user", "status"])]

    def __str__(self) -> str:
        return f"request {self.from_user_id} -> {self.to_user_id} ({self.status})"


class Friendship(models.Model):
    """One direction of a friendship: ``user``'s contact entry for ``friend``.

    A friendship is always two rows (one per side), written and deleted together.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="friendships")
    friend = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    remark = models.CharField(max_length=64, blank=True, help_text="The name user gives friend.")
    source = models.CharField(max_length=16, default="search")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "friend"], name="friendship_unique"),
            models.CheckConstraint(condition=~Q(user=F("friend")), name="friendship_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} -> {self.friend_id}"


class ContactTag(models.Model):
    """A label a user puts on friends (Moments' "share with" uses them)."""

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="contact_tags")
    name = models.CharField(max_length=32)
    members = models.ManyToManyField(User, related_name="tagged_in", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="tag_name_unique_per_owner")]

    def __str__(self) -> str:
        return self.name


class Block(models.Model):
    """``blocker`` blocked ``blocked``: no requests, no messages, no Moments either way."""

    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="block_unique"),
            models.CheckConstraint(condition=~Q(blocker=F("blocked")), name="block_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"
