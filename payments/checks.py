"""System checks of the payments app (``manage.py check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

# As Django asks of SECRET_KEY (security.W009): long enough not to be guessed.
IDENTITY_KEY_MIN_LENGTH = 32


@register(Tags.security, deploy=True)
def check_identity_key(app_configs=None, **kwargs) -> list[Warning]:
    """Production needs a dedicated ``PAYMENTS_IDENTITY_KEY``: the ID number hashes are only as
    secret as their key (a resident ID number is found by trying region, birth date and 3
    digits), and the key derived from ``SECRET_KEY`` sits in the same configuration as the
    database credentials; it would also change with every ``SECRET_KEY`` rotation."""
    key = getattr(settings, "PAYMENTS_IDENTITY_KEY", "")
    if key and len(key) >= IDENTITY_KEY_MIN_LENGTH and key != settings.SECRET_KEY:
        return []
    return [
        Warning(
            "PAYMENTS_IDENTITY_KEY is not set, or is shorter than "
            f"{IDENTITY_KEY_MIN_LENGTH} characters, or is SECRET_KEY: the real-name ID number "
            "hashes are then keyed by a key derived from SECRET_KEY.",
            hint="Set PAYMENTS_IDENTITY_KEY to a long random value kept apart from the other "
            "settings and from the database backups, before the first verification (changing "
            "it later makes every stored hash unmatchable). See docs/payments.md.",
            id="payments.W001",
        )
    ]
