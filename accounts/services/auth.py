"""Sign-up, verification, login sessions and tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from superapp.core import events as core_events
from superapp.core import push
from superapp.core.errors import (
    ApplicationError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ValidationFailed,
)

from .. import events
from ..identifiers import normalize_email, normalize_phone
from ..models import LoginSession, User, VerificationCode
from ..tokens import issue_pair

CODE_MAX_ATTEMPTS = 5
CODE_RESEND_SECONDS = 60
CODES_PER_HOUR = 5


class AuthError(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "authentication_failed"


@dataclass(frozen=True)
class Login:
    session: LoginSession
    tokens: dict[str, str]


# --- sign-up and verification ---------------------------------------------------------------


def _code_hash(code_id_hint: str, code: str) -> str:
    return salted_hmac("accounts.verification", f"{code_id_hint}:{code}").hexdigest()


def _generated_handle() -> str:
    return f"u_{secrets.token_hex(5)}"


@transaction.atomic
def user_register(
    *, password: str, display_name: str, phone: str | None = None, email: str | None = None
) -> User:
    """Create an unverified account and send a verification code to its phone or email.

    An unverified account holding the same phone/email is taken over (nobody proved owning it);
    a verified one is a conflict.
    """
    if bool(phone) == bool(email):
        raise ValidationFailed(
            _("Give either a phone number or an email address."),
            fields={"phone": [_("Phone or email is required, not both.")]},
        )
    channel, destination = (
        ("phone", normalize_phone(phone)) if phone else ("email", normalize_email(email or ""))
    )
    display_name = (display_name or "").strip()
    if not display_name or len(display_name) > 64:
        raise ValidationFailed(fields={"display_name": [_("1 to 64 characters.")]})

    existing = User.objects.select_for_update().filter(**{channel: destination}).first()
    if existing is not None and existing.is_verified:
        message = (
            _("An account with this phone number already exists.")
            if channel == "phone"
            else _("An account with this email address already exists.")
        )
        raise Conflict(message, code="already_registered")
    user = existing or User(handle=_generated_handle(), **{channel: destination})
    user.display_name = display_name
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationFailed(fields={"password": list(exc.messages)}) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise Conflict(_("Someone registered at the same moment; try again."), code="conflict") from None
    if existing is not None:
        # Codes sent to the previous claimant stop working.
        VerificationCode.objects.filter(user=user, used_at__isnull=True).update(used_at=timezone.now())
    verification_code_issue(user=user)
    return user


def verification_code_issue(*, user: User) -> VerificationCode:
    """Create a code for the user's phone (or email) and send it after commit (Celery task).

    Raises RateLimited within a minute of the last code, or past 5 codes an hour.
    """
    from ..tasks import send_verification_code

    if user.is_verified:
        raise Conflict(_("This account is already verified."), code="already_verified")
    now = timezone.now()
    recent = VerificationCode.objects.filter(user=user, created_at__gte=now - timedelta(hours=1))
    last = recent.order_by("-created_at").first()
    if last is not None and (now - last.created_at).total_seconds() < CODE_RESEND_SECONDS:
        raise RateLimited(_("Wait a minute before asking for another code."), code="code_recently_sent")
    if recent.count() >= CODES_PER_HOUR:
        raise RateLimited(_("Too many codes were sent. Try again in an hour."), code="too_many_codes")
    channel = "phone" if user.phone else "email"
    destination = user.phone or user.email or ""
    code = f"{secrets.randbelow(1_000_000):06d}"
    nonce = secrets.token_hex(8)
    row = VerificationCode.objects.create(
        user=user,
        channel=channel,
        destination=destination,
        code_hash=f"{nonce}${_code_hash(nonce, code)}",
        expires_at=now + settings.VERIFICATION_CODE_TTL,
    )
    language = (
        translation.get_language() or settings.LANGUAGE_CODE
    )  # the text goes out in the asker's language
    transaction.on_commit(
        lambda: send_verification_code.delay(
            channel=channel, destination=destination, code=code, language=language
        )
    )
    return row


def verification_code_resend(*, login: str) -> None:
    """Send a new code to an unverified account named by its phone or email (silent otherwise)."""
    user = _unverified_user(login)
    if user is None:
        return
    with transaction.atomic():
        verification_code_issue(user=User.objects.select_for_update().get(pk=user.pk))


def _unverified_user(login: str) -> User | None:
    value = (login or "").strip()
    try:
        field, normalized = (
            ("email", normalize_email(value)) if "@" in value else ("phone", normalize_phone(value))
        )
    except ValidationFailed:
        return None
    return User.objects.filter(**{field: normalized, "is_verified": False, "is_active": True}).first()


def user_verify(
    *, login: str, code: str, device_name: str = "", user_agent: str = "", ip: str | None = None
) -> Login:
    """Check a verification code; on success the account is verified and logged in.

    Failed attempts are counted (and committed) even though the call raises; after 5 the code
    is dead and a new one must be requested.
    """
    wrong = _("The code is wrong or has expired.")
    user = _unverified_user(login)
    if user is None or not (code or "").isdigit():
        raise ValidationFailed(wrong, code="invalid_code", fields={"code": [wrong]})
    with transaction.atomic():
        row = (
            VerificationCode.objects.select_for_update()
            .filter(user=user, used_at__isnull=True, expires_at__gt=timezone.now())
            .order_by("-created_at")
            .first()
        )
        if row is None or row.attempts >= CODE_MAX_ATTEMPTS:
            ok = False
        else:
            nonce, digest = row.code_hash.split("$", 1)
            ok = constant_time_compare(digest, _code_hash(nonce, code))
            if ok:
                row.used_at = timezone.now()
                row.save(update_fields=["used_at"])
                User.objects.filter(pk=user.pk).update(is_verified=True)
                user.is_verified = True
            else:
                row.attempts += 1
                row.save(update_fields=["attempts"])
    if not ok:
        raise ValidationFailed(wrong, code="invalid_code", fields={"code": [wrong]})
    return session_create(user=user, device_name=device_name, user_agent=user_agent, ip=ip)


# --- login sessions -----------------------------------------------------------------------------


@transaction.atomic
def session_create(
    *, user: User, device_name: str = "", user_agent: str = "", ip: str | None = None
) -> Login:
    """Open a login session for a verified user and issue its first token pair."""
    session = LoginSession(
        user=user,
        device_name=device_name[:100],
        user_agent=user_agent[:300],
        ip_address=ip,
        expires_at=timezone.now() + settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"],
    )
    tokens = issue_pair(session)
    session.save()
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    return Login(session=session, tokens=tokens)


def user_login(*, request, login: str, password: str, device_name: str = "") -> Login:
    """Check credentials (django-axes counts failures and locks the account's logins)."""
    http_request = getattr(request, "_request", request)
    user = authenticate(http_request, login=login, password=password)
    if user is None:
        if getattr(http_request, "axes_locked_out", False):
            raise RateLimited(
                _("Too many failed logins. Try again in %(minutes)d minutes.")
                % {"minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)},
                code="login_locked",
            )
        raise AuthError(_("Wrong login or password."), code="invalid_credentials")
    if not user.is_verified:
        raise Forbidden(_("Verify your phone or email first."), code="not_verified")
    return session_create(
        user=user,
        device_name=device_name,
        user_agent=http_request.META.get("HTTP_USER_AGENT", ""),
        ip=http_request.META.get("REMOTE_ADDR"),
    )


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        token = RefreshToken(raw)
    except TokenError:
        raise AuthError(_("The refresh token is invalid or expired."), code="token_invalid") from None
    if "sid" not in token:
        raise AuthError(_("The refresh token is invalid or expired."), code="token_invalid")
    return token


def token_refresh(*, refresh: str) -> dict[str, str]:
    """Rotate: a new pair for the newest refresh token of an open session.

    Presenting an older (already rotated) refresh token ends the whole session: somebody else
    holds a copy (OAuth 2.0 Security BCP, refresh token rotation with reuse detection).
    """
    token = _decode_refresh(refresh)
    reused = False
    with transaction.atomic():
        session = LoginSession.objects.select_for_update().filter(pk=token["sid"]).first()
        if session is None or session.revoked_at is not None or session.expires_at <= timezone.now():
            raise AuthError(_("This login session has ended."), code="session_revoked")
        if token["jti"] != session.refresh_jti:
            _revoke(session, reason="refresh_reuse")
            reused = True
        else:
            tokens = issue_pair(session)
            session.last_seen_at = timezone.now()
            session.save(update_fields=["refresh_jti", "last_seen_at"])
    if reused:
        raise AuthError(
            _("This refresh token was already used; the session was ended for safety."), code="token_reused"
        )
    return tokens


def _revoke(session: LoginSession, *, reason: str) -> None:
    """Mark revoked, tell the user's devices and close the session's sockets (caller holds the row)."""
    session.revoked_at = timezone.now()
    session.revoke_reason = reason
    session.save(update_fields=["revoked_at", "revoke_reason"])
    push.devices_disable_for_session(session_id=session.id)  # a logged-out phone gets no more pushes
    core_events.publish(
        user_ids=[session.user_id],
        type=events.SESSION_REVOKED,
        data={"session_id": str(session.id), "reason": reason},
    )
    sid = session.id
    transaction.on_commit(lambda: core_events.send_to_session(sid, {"type": "session.revoked"}))


@transaction.atomic
def session_revoke(*, user: User, session_id, reason: str = "revoked") -> None:
    """End one of the user's own sessions (another user's is 'not found')."""
    session = LoginSession.objects.select_for_update().filter(pk=session_id, user=user).first()
    if session is None:
        raise NotFound()
    if session.revoked_at is None:
        _revoke(session, reason=reason)


def user_logout(*, user: User | None, session_id=None, refresh: str | None = None) -> None:
    """End the current session, named by the access token or by a refresh token."""
    if session_id is None and refresh:
        token = _decode_refresh(refresh)
        session = LoginSession.objects.select_related("user").filter(pk=token["sid"]).first()
        if session is None or token["jti"] != session.refresh_jti:
            raise AuthError(_("The refresh token is invalid or expired."), code="token_invalid")
        user, session_id = session.user, session.id
    if session_id is None or user is None:
        raise ValidationFailed(fields={"refresh": [_("Give the refresh token or an access token.")]})
    session_revoke(user=user, session_id=session_id, reason="logout")


# --- WebSocket tickets -------------------------------------------------------------------------


def ws_ticket_create(*, user: User, session_id) -> str:
    """A single-use ticket, valid 60 seconds, to open /ws/ where headers cannot carry a token."""
    ticket = secrets.token_urlsafe(32)
    cache.set(f"ws-ticket:{ticket}", (user.pk, str(session_id)), timeout=settings.WS_TICKET_TTL_SECONDS)
    return ticket


def ws_ticket_redeem(*, ticket: str) -> tuple[int, str] | None:
    """``(user_id, session_id)`` for a fresh ticket, once; None otherwise."""
    if not ticket or len(ticket) > 100:
        return None
    value = cache.get(f"ws-ticket:{ticket}")
    if value is None:
        return None
    # cache.add is atomic (SET NX): of two sockets racing with one ticket, one wins.
    if not cache.add(f"ws-ticket-used:{ticket}", 1, timeout=settings.WS_TICKET_TTL_SECONDS):
        return None
    cache.delete(f"ws-ticket:{ticket}")
    return value


@transaction.atomic
def user_create_verified(
    *, handle: str, password: str, display_name: str, email: str | None = None, phone: str | None = None
) -> User:
    """Create a ready-to-use account (demo data, staff tooling): no code is sent.

    Returns the existing account unchanged when the handle is taken (idempotent seeding).
    """
    from ..identifiers import normalize_handle

    handle = normalize_handle(handle)
    existing = User.objects.filter(handle=handle).first()
    if existing is not None:
        return existing
    user = User(
        handle=handle,
        display_name=display_name,
        email=normalize_email(email) if email else None,
        phone=normalize_phone(phone) if phone else None,
        is_verified=True,
    )
    user.set_password(password)
    user.save()
    return user
