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
    login = (credentials or {}).get("login") or ""
    kind = classify_login(login)
    return f"{kind[0]}:{kind[1]}" if kind else login.strip().lower()[:100]
