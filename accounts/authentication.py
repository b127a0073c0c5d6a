"""DRF authentication: a Bearer access token whose login session is still open.

One query per request: the user row joined with its open session. A revoked session's access tokens
stop working at once, not when they expire.

Both steps run on every authenticated request, so both are kept lean (measured in
``bench/breakdown.py``, BENCHMARKS.md "me"):

* **The token.** simplejwt/PyJWT verify a token in about 45-100 µs of CPU, most of it PyJWT
  re-checking on every call that the HMAC secret is not a PEM, SSH or DER key, and base64/JSON
  decoding. A client sends the same access token for its whole life (15 minutes), so a verified
  token is remembered per process (:func:`_verified_access_token`, bounded LRU), keyed by its exact
  bytes: the signature of the same bytes under the same key cannot change, nor can its type or
  claims. What can change is time, so ``exp`` is checked again on every use. Only
  ``AccessToken`` is remembered, which simplejwt never blacklists (revocation here is per login
  session, checked in the database on every request below). A token that fails is never
  remembered.
* **The user.** One plain statement on Django's cursor, the columns named, the row turned into a
  ``User`` by ``Model.from_db`` (what the ORM does for each row): building the ORM query cost more
  than running it, and ``RawQuerySet`` spent as much again mapping columns to fields per call.
"""

from __future__ import annotations

import copy
import functools
import uuid

from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow

from .models import LoginSession, User

_SESSION_PK = LoginSession._meta.pk
_USER_FIELDS = User._meta.concrete_fields
_USER_ATTNAMES = [field.attname for field in _USER_FIELDS]

# Per process. An entry (the token and its decoded payload) is ~1.3 KB; 8,192 of them ~10 MB, enough for the active clients of
# one worker within a token's lifetime. Past that, the least recently used are verified again.
VERIFIED_TOKENS_MAX = 8192


@functools.lru_cache(maxsize=VERIFIED_TOKENS_MAX)
def _verified_access_token(raw_token: bytes) -> AccessToken:
    """simplejwt's full check (signature, ``exp``, type, ``jti``); raises, and then remembers
    nothing, when the token is not a valid access token."""
    return AccessToken(raw_token)


@functools.cache
def _user_statement() -> tuple[str, list[tuple[int, object, list]]]:
    """The statement (the default database's dialect) and the converters its columns need there
    (none on PostgreSQL; SQLite returns datetimes and booleans as text and integers)."""
    qn = connection.ops.quote_name
    table = User._meta.db_table
    session = LoginSession._meta
    columns = ", ".join(f"u.{qn(field.column)}" for field in _USER_FIELDS)
    sql = (  # constant text, names from the models; the session id is the one parameter
        f"SELECT {columns} FROM {qn(table)} u "  # noqa: S608
        f"JOIN {qn(session.db_table)} s ON s.{qn(session.get_field('user').column)} = u.{qn(User._meta.pk.column)} "
        f"WHERE s.{qn(_SESSION_PK.column)} = %s AND s.{qn(session.get_field('revoked_at').column)} IS NULL"
    )
    converters = []
    for index, field in enumerate(_USER_FIELDS):
        col = field.get_col(table)
        functions = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if functions:
            converters.append((index, col, functions))
    return sql, converters


def _user_with_open_session(session_key) -> User | None:
    sql, converters = _user_statement()
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_key])
        row = cursor.fetchone()
    if row is None:
        return None
    if converters:
        row = list(row)
        for index, col, functions in converters:
            for convert in functions:
                row[index] = convert(row[index], col, connection)
    return User.from_db(connection.alias, _USER_ATTNAMES, row)


class SessionJWTAuthentication(JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> AccessToken:
        try:
            verified = _verified_access_token(raw_token)
            now = aware_utcnow()
            verified.check_exp(current_time=now)  # it may have been verified minutes ago
        except TokenError:
            # simplejwt's own path, for its exact error (expired, invalid, wrong type).
            return super().get_validated_token(raw_token)
        # Each request gets its own token object: request.auth must not be shared between requests.
        token = copy.copy(verified)
        token.payload = dict(verified.payload)
        token.current_time = now
        return token

    def get_user(self, validated_token):
        sid = validated_token.get("sid")
        if not sid:
            raise InvalidToken(_("Token has no session."))
        try:
            session_key = _SESSION_PK.get_db_prep_value(uuid.UUID(str(sid)), connection)  # hex on SQLite
        except ValueError:
            session_key = None
        user = _user_with_open_session(session_key) if session_key else None
        if user is None:
            raise AuthenticationFailed(_("This login session has ended."), code="session_revoked")
        if not user.is_active:
            raise AuthenticationFailed(_("User is inactive."), code="user_inactive")
        user.login_session_id = sid
        return user
