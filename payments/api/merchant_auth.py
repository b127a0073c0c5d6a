"""Authentication of the merchant orders API (server to server): HMAC-signed requests.

``MerchantSignatureAuthentication`` checks the ``Authorization: SUPERAPP-HMAC-SHA256 ...`` header
(``payments.signing`` describes it), in this order: the header's shape, the key (live, its
merchant's owner active), the timestamp (within ``PAYMENTS_SIGNATURE_WINDOW``), the signature
over method, path with query, timestamp, nonce and raw body, and last the nonce (unused for this
key within the window: claimed only once the signature is proven, so nobody can burn a
merchant's nonces). ``request.user`` is the merchant's owner; ``request.auth`` a
:class:`MerchantAuth`. Every answer of a :class:`SignedMerchantView` to an authenticated request
is signed back with the same key.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from .. import merchant_selectors, signing
from ..models import Merchant, MerchantKey

_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")  # lowercase hex of HMAC-SHA256


@dataclass(frozen=True)
class MerchantAuth:
    merchant: Merchant
    key: MerchantKey
    secret: str


def _fail(code: str, message) -> AuthenticationFailed:
    return AuthenticationFailed({"detail": str(message), "code": code})


class MerchantSignatureAuthentication(BaseAuthentication):
    def authenticate(self, request: Request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        params = signing.parse_authorization(header)
        if params is None:
            raise _fail(
                "malformed_authorization",
                _(
                    'Send Authorization: SUPERAPP-HMAC-SHA256 key_id="..",timestamp="..",nonce="..",signature="..".'
                ),
            )
        key = merchant_selectors.merchant_key_for_auth(key_id=params["key_id"])
        if key is None or not key.merchant.owner.is_active:
            raise _fail("unknown_key", _("Unknown or revoked API key."))
        timestamp = params["timestamp"]
        if (
            not _TIMESTAMP_RE.fullmatch(timestamp)
            or abs(time.time() - int(timestamp)) > settings.PAYMENTS_SIGNATURE_WINDOW
        ):
            raise _fail("stale_timestamp", _("The request's timestamp is too far from the server's clock."))
        nonce = params["nonce"]
        if not signing.NONCE_RE.fullmatch(nonce):
            raise _fail("invalid_nonce", _("The nonce is 8 to 64 letters, digits, _ or -."))
        secret = signing.secret_decrypt(key.secret_encrypted)
        message = signing.request_message(
            method=request.method,
            path=request.get_full_path(),
            timestamp=timestamp,
            nonce=nonce,
            body=request.body,
        )
        signature = params["signature"]
        # Checked for shape first: compare_digest raises TypeError on a non-ASCII str (a 500).
        if not _SIGNATURE_RE.fullmatch(signature) or not hmac.compare_digest(
            signing.hmac_hex(secret, message).encode(), signature.encode()
        ):
            raise _fail("invalid_signature", _("The request signature is not valid."))
        if not signing.nonce_claim(key_id=key.key_id, nonce=nonce, timestamp=int(timestamp)):
            raise _fail("nonce_reused", _("This nonce was already used; send a new one with each request."))
        return key.merchant.owner, MerchantAuth(merchant=key.merchant, key=key, secret=secret)

    def authenticate_header(self, request: Request) -> str:
        return f'{signing.SCHEME} realm="api"'


class MerchantSignatureScheme(OpenApiAuthenticationExtension):
    target_class = MerchantSignatureAuthentication
    name = "merchantSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                'SUPERAPP-HMAC-SHA256 key_id="..",timestamp="..",nonce="..",signature="<hex HMAC-SHA256 '
                'of METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n>"; answers carry '
                "Superapp-Pay-Timestamp/-Nonce/-Signature (HMAC of TIMESTAMP\\nNONCE\\nBODY\\n)."
            ),
        }


class MerchantRateThrottle(SimpleRateThrottle):
    """Requests per merchant (scope ``merchant_api``, ``THROTTLE_MERCHANT_API``): one merchant's
    runaway client cannot take the API from the others. Counted after the signature checks out,
    so only the key's owner spends its budget; a 429 is signed like every answer."""

    scope = "merchant_api"

    def get_cache_key(self, request, view):
        auth = getattr(request, "auth", None)
        if not isinstance(auth, MerchantAuth):
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"merchant-{auth.merchant.id}"}


class SignedMerchantView(APIView):
    """Base of the orders API views: signed requests in, signed answers out."""

    authentication_classes = [MerchantSignatureAuthentication]
    throttle_classes = [MerchantRateThrottle]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        auth = getattr(request, "_auth", None)
        if isinstance(auth, MerchantAuth):
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            for name, value in signing.response_headers(secret=auth.secret, body=response.content).items():
                response[name] = value
        return response

    @property
    def merchant(self) -> Merchant:
        return self.request.auth.merchant
