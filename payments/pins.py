"""Payment PIN hashes: HMAC-SHA256 under a server-held key, the way banks verify PINs.

A 6-digit PIN has only 10^6 values: no password hasher makes a leaked hash expensive to try for
long (argon2 at ~170 ms of CPU is 47 CPU-hours for all of them), while it caps a 2-core server at
~10 payments a second. Banks instead compute a PIN verification value under a secret key held
apart from the database (IBM 3624 offsets, Visa PVV, in an HSM): a stolen table is worthless
without the key, and guessing online is stopped by the attempt limit (5 tries, then a 3-hour
lock: ``services.pin_verify``). This does the same in software: the key comes from
``PAYMENTS_PIN_KEYS`` (the first hashes, every one verifies, for rotation), else it is derived
from ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``; the derived keys always verify too, so setting
``PAYMENTS_PIN_KEYS`` later locks nobody out). Each hash names its key by a short id, so a
key can be rotated without locking anyone out: a PIN hashed under an older key, or by the
password hasher this module replaced, is re-hashed under the current key after it verifies.

Format: ``pin_hmac_sha256$<key id>$<salt>$<hex digest of HMAC(key, salt + "$" + pin)>``.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.utils.crypto import get_random_string, salted_hmac

ALGORITHM = "pin_hmac_sha256"


class PinKeyMissing(Exception):
    """A stored hash names a key this server does not have: a configuration fault (a key was
    removed from ``PAYMENTS_PIN_KEYS``, or ``SECRET_KEY`` changed without its fallback), never
    the user's mistake."""


def _keys() -> list[bytes]:
    """The configured keys (the first one hashes), then the ones derived from ``SECRET_KEY`` and
    its fallbacks, which keep verifying the PINs hashed before ``PAYMENTS_PIN_KEYS`` was set."""
    configured = [k.encode() for k in getattr(settings, "PAYMENTS_PIN_KEYS", []) if k]
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    derived = [salted_hmac("superapp.payments.pin", "key", secret=s).digest() for s in secrets]
    return [*configured, *derived]


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id:" + key).hexdigest()[:8]


def _digest(key: bytes, salt: str, pin: str) -> str:
    return hmac.new(key, f"{salt}${pin}".encode(), hashlib.sha256).hexdigest()


def pin_hash(pin: str) -> str:
    key = _keys()[0]
    salt = get_random_string(16)
    return f"{ALGORITHM}${_key_id(key)}${salt}${_digest(key, salt, pin)}"


def pin_matches(pin: str, encoded: str) -> tuple[bool, bool]:
    """Whether ``pin`` matches ``encoded``, and whether the hash should be replaced (it matched
    under an older key or an older hasher). Raises :class:`PinKeyMissing` when the hash names a
    key this server does not have."""
    if not encoded.startswith(ALGORITHM + "$"):
        # A hash made by Django's password hashers before this module (argon2).
        ok = check_password(pin, encoded)
        return ok, ok
    try:
        _, key_id, salt, digest = encoded.split("$")
    except ValueError:
        return False, False
    keys = _keys()
    for i, key in enumerate(keys):
        if hmac.compare_digest(_key_id(key), key_id):
            ok = hmac.compare_digest(_digest(key, salt, pin), digest)
            return ok, ok and i > 0
    raise PinKeyMissing(key_id)
