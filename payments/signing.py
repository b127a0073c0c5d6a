"""Signatures of the merchant orders API (server to server), WeChat Pay v3's scheme with HMAC.

A request carries one header::

    Authorization: SUPERAPP-HMAC-SHA256 key_id="mk_...",timestamp="1700000000",nonce="...",signature="..."

where ``signature`` is the lowercase hex HMAC-SHA256, keyed with the merchant's API secret, of::

    METHOD \\n PATH_WITH_QUERY \\n TIMESTAMP \\n NONCE \\n BODY \\n

(the raw body bytes; empty for a GET). The server refuses a timestamp more than
``PAYMENTS_SIGNATURE_WINDOW`` seconds away from its clock and a nonce already seen for that key
within the window. Every answer to an authenticated request is signed back with the same secret
in ``Superapp-Pay-Timestamp``, ``Superapp-Pay-Nonce`` and ``Superapp-Pay-Signature`` over::

    TIMESTAMP \\n NONCE \\n BODY \\n

:func:`authorization_header` and :func:`response_signature_valid` are what a merchant's client
does (the tests and the benchmark use them).

API secrets are stored encrypted with Fernet (``cryptography``): an HMAC needs the secret itself,
so a hash would not do. ``PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS`` lists Fernet keys (the first
encrypts, all decrypt, so the key can be rotated); by default one key is derived from
``SECRET_KEY``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Mapping

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.cache import cache

SCHEME = "SUPERAPP-HMAC-SHA256"
RESPONSE_TIMESTAMP = "Superapp-Pay-Timestamp"
RESPONSE_NONCE = "Superapp-Pay-Nonce"
RESPONSE_SIGNATURE = "Superapp-Pay-Signature"
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
_PARAM_RE = re.compile(r'([a-z_]+)="([^"]*)"')


def new_key_id() -> str:
    return "mk_" + secrets.token_hex(12)


def new_secret() -> str:
    return "sk_" + secrets.token_urlsafe(32)


def new_nonce() -> str:
    return secrets.token_hex(16)


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def request_message(*, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def response_message(*, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def authorization_header(
    *,
    key_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> str:
    """The ``Authorization`` value for one request (what a merchant's server sends)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    signature = hmac_hex(
        secret, request_message(method=method, path=path, timestamp=ts, nonce=nonce, body=body)
    )
    return f'{SCHEME} key_id="{key_id}",timestamp="{ts}",nonce="{nonce}",signature="{signature}"'


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of a ``SUPERAPP-HMAC-SHA256`` header, or ``None`` when it is not one."""
    scheme, _sep, rest = value.strip().partition(" ")
    if scheme != SCHEME:
        return None
    params = dict(_PARAM_RE.findall(rest))
    if not {"key_id", "timestamp", "nonce", "signature"} <= params.keys():
        return None
    return params


def response_headers(*, secret: str, body: bytes) -> dict[str, str]:
    ts, nonce = str(int(time.time())), new_nonce()
    return {
        RESPONSE_TIMESTAMP: ts,
        RESPONSE_NONCE: nonce,
        RESPONSE_SIGNATURE: hmac_hex(secret, response_message(timestamp=ts, nonce=nonce, body=body)),
    }


def response_signature_valid(*, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """What a merchant checks on every answer (``headers`` looked up case-insensitively)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ts = lowered.get(RESPONSE_TIMESTAMP.lower(), "")
    nonce = lowered.get(RESPONSE_NONCE.lower(), "")
    expected = hmac_hex(secret, response_message(timestamp=ts, nonce=nonce, body=body))
    received = lowered.get(RESPONSE_SIGNATURE.lower(), "")
    # Bytes: compare_digest raises TypeError on a non-ASCII str.
    return bool(ts and nonce) and hmac.compare_digest(expected.encode(), received.encode("utf-8", "replace"))


def nonce_claim(*, key_id: str, nonce: str, timestamp: int) -> bool:
    """Remember a nonce while its request's ``timestamp`` can pass the window check, plus 1 s;
    ``False`` if it was already used.

    ``cache.add`` is Redis ``SET NX EX`` in production: atomic across processes. A timestamp
    passes while ``|now - timestamp| <= PAYMENTS_SIGNATURE_WINDOW``, i.e. until
    ``timestamp + window`` (a fraction of a second included); after that the timestamp check
    refuses the replay anyway. The extra second covers the sub-second edge and the rounding
    of the expiry to whole seconds.
    """
    valid_for = timestamp + settings.PAYMENTS_SIGNATURE_WINDOW - time.time()
    return cache.add(f"payments:nonce:{key_id}:{nonce}", 1, timeout=max(1, math.ceil(valid_for) + 1))


# --- secrets at rest --------------------------------------------------------------------------


def _fernet() -> MultiFernet:
    keys = list(settings.PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS)
    if not keys:
        derived = hashlib.sha256(b"superapp.payments.merchant-keys:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k) for k in keys])


def secret_encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


@functools.lru_cache(maxsize=4096)
def secret_decrypt(token: str) -> str:
    """Raises ``cryptography.fernet.InvalidToken`` when no configured key opens it. Cached per
    token (a token is one encryption of one secret), so a busy key is decrypted once a process."""
    return _fernet().decrypt(token.encode()).decode()
