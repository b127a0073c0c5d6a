"""Real-name verification: one row per attempt, and one row per real-world identity.

The rules live in the database, not in a check-then-act: a user has at most one ``pending``
verification and at most one ``verified`` one (partial unique indexes), and accounts are bound to
an :class:`VerifiedIdentity` whose row is locked while its accounts are counted
(``payments.verification``). An ID number is never stored in clear: only its keyed hash (HMAC
under a dedicated server key) and, for a mainland resident ID, its check character (computed from
the 17 digits before it, so it tells nothing the hash does not). No digit of the number is kept:
the region and birth date are often known, and the sequence digits next to the hash would give
the number back to whoever holds the key.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class VerifiedIdentity(models.Model):
    """One real-world identity (an ID document), known only by its keyed hash. Its row is the
    lock under which the accounts verified with it are counted."""

    id = models.BigAutoField(primary_key=True)
    # HMAC-SHA256 (hex) of "<id type>:<normalized number>" under PAYMENTS_IDENTITY_KEY.
    identity_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Staff revoked a verification of it for fraud: no account verifies with it until lifted.
    blocked = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "verified identities"

    def __str__(self) -> str:
        return f"identity {self.id}"


class IdentityVerification(models.Model):
    """One attempt of a user to prove their real name, at one provider."""

    class Status(models.TextChoices):
        PENDING = "pending"  # started; the user (or the provider) has not finished
        VERIFIED = "verified"  # the wallet is real-name verified
        FAILED = "failed"  # the provider could not verify, or the identity is used up
        CANCELED = "canceled"  # by the user, or superseded by a new attempt
        REVOKED = "revoked"  # staff took the verification back

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=16)
    provider_ref = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # When the provider said "verified" (Stripe's webhook); the outputs are fetched afterwards.
    provider_verified_at = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_reason = models.CharField(max_length=200, blank=True)
    # What was verified (empty until verified): the name in full (shown masked), the document's
    # kind, the keyed hash of its number and, for a resident ID only, its check character;
    # never the number nor any of its digits.
    legal_name = models.CharField(max_length=200, blank=True)
    id_type = models.CharField(max_length=64, blank=True)
    id_number_hash = models.CharField(max_length=64, blank=True)
    id_number_check = models.CharField(max_length=1, blank=True)
    identity = models.ForeignKey(
        VerifiedIdentity, on_delete=models.PROTECT, null=True, blank=True, related_name="verifications"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A revoked verification that also blocks its user from verifying again (fraud), until staff
    # lift it; its identity is then blocked too (``VerifiedIdentity.blocked``).
    blocks_user = models.BooleanField(default=False)
    # When the provider accepted to delete its copy of the session (Stripe Identity's redact: the
    # document images, the selfie, the verified outputs). Null on an ended attempt whose session
    # is still kept there: the sweeper asks again (``verification.verifications_complete_stale``).
    # What we keep ourselves (the name, the hash, the check character) is not touched.
    redacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(status="pending"), name="identity_verification_one_open"
            ),
            models.UniqueConstraint(
                fields=["user"], condition=Q(status="verified"), name="identity_verification_one_verified"
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_ref"],
                condition=~Q(provider_ref=""),
                name="identity_verification_provider_ref_unique",
            ),
            models.CheckConstraint(
                condition=~Q(status="verified") | Q(identity__isnull=False),
                name="identity_verification_verified_has_identity",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-id"]),
            models.Index(fields=["identity", "status"]),
            # The sweeper's redactions still to do: a handful of rows, whatever the table's size.
            models.Index(
                fields=["resolved_at"],
                condition=Q(redacted_at__isnull=True)
                & ~Q(status="pending")
                & ~Q(provider_ref="")
                & ~Q(provider="sandbox"),
                name="identity_verif_unredacted",
            ),
        ]

    def __str__(self) -> str:
        return f"verification {self.id} of {self.user_id} ({self.status})"


# What ``GET /api/v1/payments/verification`` shows: the latest attempt's status, or none.
VERIFICATION_STATES = [("none", "none"), *IdentityVerification.Status.choices]
