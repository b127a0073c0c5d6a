"""JWTs (encoded and verified by djangorestframework-simplejwt) bound to a LoginSession.

Both tokens carry ``sid``, the session id. The refresh token's ``jti`` must equal the session's
``refresh_jti``: rotation replaces it, so every earlier refresh token of the family stops working.
"""

from __future__ import annotations

from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from .models import LoginSession


def issue_pair(session: LoginSession) -> dict[str, str]:
    """New access + refresh tokens for ``session``; stores the refresh token's jti on it.

    The caller saves ``session`` (``refresh_jti`` changed).
    """
    refresh = RefreshToken()
    refresh["user_id"] = session.user_id
    refresh["sid"] = str(session.id)
    session.refresh_jti = refresh["jti"]
    access = AccessToken()
    access["user_id"] = session.user_id
    access["sid"] = str(session.id)
    return {"access": str(access), "refresh": str(refresh)}
