"""Bearer authentication (accounts/authentication.py): the token is verified once per process and
remembered, and everything that can change is checked again on every request."""

from datetime import timedelta

import pytest
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts import authentication
from accounts.models import LoginSession
from tests.conftest import login_tokens
from tests.core.test_errors import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_tokens():
    authentication._verified_access_token.cache_clear()
    yield
    authentication._verified_access_token.cache_clear()


def bearer(api, token):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def test_me_is_one_query_and_the_token_is_verified_once(api, alice, django_assert_num_queries):
    bearer(api, login_tokens(alice)["access"])
    for _ in range(3):
        with django_assert_num_queries(1):  # the user joined with the open session
            response = api.get("/api/v1/me")
        assert response.status_code == 200
        assert response.json()["handle"] == alice.handle
    info = authentication._verified_access_token.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_the_user_row_is_the_whole_user(api, alice, monkeypatch):
    alice.bio, alice.region = "Climber", "Shanghai"
    alice.save()
    request_user = {}
    original = authentication.SessionJWTAuthentication.get_user

    def spy(self, validated_token):
        request_user["user"] = original(self, validated_token)
        return request_user["user"]

    monkeypatch.setattr(authentication.SessionJWTAuthentication, "get_user", spy)
    assert bearer(api, login_tokens(alice)["access"]).get("/api/v1/me").status_code == 200
    user = request_user["user"]
    alice.refresh_from_db()
    for field in type(alice)._meta.concrete_fields:
        assert getattr(user, field.attname) == getattr(alice, field.attname), field.name
    assert user._state.adding is False and user._state.db == "default"
    assert str(user.login_session_id) == str(LoginSession.objects.get(user=alice).pk)


def test_a_remembered_token_still_expires(api, alice, monkeypatch):
    access = login_tokens(alice)["access"]
    assert bearer(api, access).get("/api/v1/me").status_code == 200
    expires = AccessToken(access)["exp"]
    later = authentication.aware_utcnow() + timedelta(seconds=expires - AccessToken(access)["iat"] + 1)
    monkeypatch.setattr(authentication, "aware_utcnow", lambda: later)
    monkeypatch.setattr("rest_framework_simplejwt.tokens.aware_utcnow", lambda: later)
    assert_error(api.get("/api/v1/me"), 401, "token_not_valid")


def test_revoking_the_session_stops_a_remembered_token_at_once(client_for, alice):
    client = client_for(alice)
    assert client.get("/api/v1/me").status_code == 200
    LoginSession.objects.filter(pk=client.tokens["session_id"]).update(revoked_at="2026-01-01T00:00:00Z")
    assert_error(client.get("/api/v1/me"), 401, "session_revoked")


def test_deactivating_the_user_stops_a_remembered_token_at_once(client_for, alice):
    client = client_for(alice)
    assert client.get("/api/v1/me").status_code == 200
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    assert_error(client.get("/api/v1/me"), 401, "user_inactive")


def test_bad_tokens_are_refused_and_never_remembered(api, alice):
    tokens = login_tokens(alice)
    head, payload, signature = tokens["access"].split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    refresh = str(RefreshToken(tokens["refresh"]))
    for token in (forged, refresh, "not.a.jwt", tokens["access"] + "x"):
        assert_error(bearer(api, token).get("/api/v1/me"), 401, "token_not_valid")
    assert authentication._verified_access_token.cache_info().currsize == 0


def test_each_request_gets_its_own_token_object(alice):
    raw = login_tokens(alice)["access"].encode()
    auth = authentication.SessionJWTAuthentication()
    first, second = auth.get_validated_token(raw), auth.get_validated_token(raw)
    assert first is not second and first.payload is not second.payload
    first["sid"] = "changed"
    assert second["sid"] != "changed"
    assert auth.get_validated_token(raw)["sid"] != "changed"
