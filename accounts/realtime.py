"""WebSocket authentication for the core consumer (``WS_AUTHENTICATOR`` setting)."""

from __future__ import annotations

from urllib.parse import parse_qs

from django.utils.translation import gettext as _
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from superapp.core.realtime import (
    CLOSE_SESSION_REVOKED,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
    SocketAuthError,
    SocketIdentity,
)

from . import services
from .models import LoginSession

AUTH_PREFIX = "superapp.auth."
TICKET_PREFIX = "superapp.ticket."


def authenticate_socket(scope) -> SocketIdentity:
    """Identify a socket from its subprotocols (access token or ticket) or ``?ticket=``."""
    offered = scope.get("subprotocols") or []
    token = next((p[len(AUTH_PREFIX) :] for p in offered if p.startswith(AUTH_PREFIX)), None)
    ticket = next((p[len(TICKET_PREFIX) :] for p in offered if p.startswith(TICKET_PREFIX)), None)
    if ticket is None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ticket = (query.get("ticket") or [None])[0]

    if token:
        try:
            access = AccessToken(token)
        except TokenError as exc:
            expired = "expired" in str(exc).lower()
            raise SocketAuthError(
                CLOSE_TOKEN_EXPIRED if expired else CLOSE_UNAUTHENTICATED,
                _("The access token has expired.") if expired else _("The access token is invalid."),
            ) from None
        user_id, session_id = access.get("user_id"), access.get("sid")
    elif ticket:
        redeemed = services.ws_ticket_redeem(ticket=ticket)
        if redeemed is None:
            raise SocketAuthError(CLOSE_UNAUTHENTICATED, _("The ticket is invalid, used or expired."))
        user_id, session_id = redeemed
    else:
        raise SocketAuthError(CLOSE_UNAUTHENTICATED, _("Credentials are missing."))

    alive = LoginSession.objects.filter(
        pk=session_id, user_id=user_id, revoked_at__isnull=True, user__is_active=True
    ).exists()
    if not alive:
        raise SocketAuthError(CLOSE_SESSION_REVOKED, _("This login session has ended."))
    return SocketIdentity(user_id=int(user_id), session_id=str(session_id))
