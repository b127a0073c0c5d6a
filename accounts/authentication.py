"""DRF authentication: a Bearer access token whose login session is still open.

One query per request: the session row joined with its user. A revoked session's access tokens
stop working at once, not when they expire.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from .models import LoginSession


class SessionJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token):
        sid = validated_token.get("sid")
        if not sid:
            raise InvalidToken(_("Token has no session."))
        session = (
            LoginSession.objects.select_related("user")
            .filter(pk=sid, revoked_at__isnull=True)
            .first()
        )
        if session is None:
            raise AuthenticationFailed(_("This login session has ended."), code="session_revoked")
        user = session.user
        if not user.is_active:
            raise AuthenticationFailed(_("User is inactive."), code="user_inactive")
        user.login_session_id = session.id
        return user

