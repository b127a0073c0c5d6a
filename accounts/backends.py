"""Authentication backend: log in with a handle, a phone or an email, plus a password."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from .identifiers import classify_login
from .models import User


def find_user_by_login(login: str) -> User | None:
    kind = classify_login(login)
    if kind is None:
        return None
    field, value = kind
    return User.objects.filter(**{field: value}).first()


class LoginBackend(ModelBackend):
    def authenticate(self, request, login: str | None = None, password: str | None = None, **kwargs):
        login = login if login is not None else kwargs.get("username")  # Django's own forms say username
        if login is None or password is None:
            return None
        user = find_user_by_login(login)
        if user is None:
            User().set_password(password)  # same work as a real check: no timing oracle
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


def axes_username(request, credentials: dict | None) -> str:
    """django-axes counts failures per account, whichever of handle/phone/email was typed."""
    credentials = credentials or {}
    login = credentials.get("login") or credentials.get("username") or ""
    user = find_user_by_login(login)
    return f"user:{user.pk}" if user is not None else login.strip().lower()[:100]


def axes_lockout_response(request, *args, **kwargs):
    """django-axes' lockout answer, in the project's one error shape."""
    from django.conf import settings
    from django.utils.translation import gettext as _

    from superapp.core.errors import json_error_response

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return json_error_response(
        "login_locked",
        _("Too many failed logins. Try again in %(minutes)d minutes.") % {"minutes": minutes},
        429,
    )
