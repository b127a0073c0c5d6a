"""The devices a user's notifications are pushed to (one row per app install and push token)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class PushDevice(models.Model):
    """One push token of one app install, registered by a signed-in user.

    A token is unique per platform: when the same token is registered again (another user
    signed in on the phone, or a new login session) the row is reassigned, never duplicated.
    Devices are disabled, not deleted, when the push service says the token is dead or the login
    session it came from is revoked; disabled rows are purged after ``PUSH_DISABLED_RETENTION_DAYS``.
    """

    class Platform(models.TextChoices):
        ANDROID = "android", "Android"
        IOS = "ios", "iOS"
        WEB = "web", "Web"

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    token = models.CharField(max_length=1024)
    # The login session (accounts.LoginSession) the token was registered from. No foreign key:
    # core imports no domain app; accounts calls devices_disable_for_session() on revocation.
    session_id = models.UUIDField(null=True, blank=True)
    app_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="Android package name, iOS bundle id (the APNs topic) or web origin.",
    )
    locale = models.CharField(max_length=35, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["platform", "token"], name="push_device_platform_token_unique"),
            models.CheckConstraint(
                condition=models.Q(platform__in=["android", "ios", "web"]), name="push_device_platform_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["session_id"],
                condition=models.Q(session_id__isnull=False),
                name="push_device_session",
            ),
            models.Index(
                fields=["disabled_at"],
                condition=models.Q(disabled_at__isnull=False),
                name="push_device_disabled_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform} device {self.id} of user {self.user_id}"

    @property
    def token_hint(self) -> str:
        return token_hint(self.token)


def token_hint(token: str) -> str:
    """A push token as it may appear in logs and admin lists: never in full."""
    if len(token) <= 12:
        return "…"
    return f"{token[:6]}…{token[-4:]}"
