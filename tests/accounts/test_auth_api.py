"""Sign-up, verification, login (lockout), token rotation, logout, sessions, tickets."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.throttling import ScopedRateThrottle

from accounts.models import LoginSession, User, VerificationCode
from tests import senders
from tests.core.test_errors import assert_error

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _record_codes(settings):
    settings.VERIFICATION_SENDER = "tests.senders.RecordingSender"
    senders.SENT.clear()


def register(api, capture, **body):
    with capture(execute=True):
        return api.post(
            "/api/v1/auth/register", {"password": PASSWORD, "display_name": "Dee", **body}, format="json"
        )


def test_register_by_email_sends_a_code_then_verify_logs_in(api, django_capture_on_commit_callbacks):
    response = register(api, django_capture_on_commit_callbacks, email="Dee@Example.com")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["verification_channel"] == "email"
    assert body["handle"].startswith("u_")
    assert senders.SENT == [
        {"channel": "email", "destination": "dee@example.com", "code": senders.SENT[0]["code"]}
    ]
    code = senders.SENT[0]["code"]
    assert len(code) == 6 and code.isdigit()
    assert code not in VerificationCode.objects.get().code_hash  # only a hash is stored

    # Not usable before verification.
    response = api.post(
        "/api/v1/auth/login", {"login": "dee@example.com", "password": PASSWORD}, format="json"
    )
    assert_error(response, 403, "not_verified")

    response = api.post("/api/v1/auth/verify", {"login": "DEE@example.com", "code": code}, format="json")
    assert response.status_code == 200, response.json()
    assert set(response.json()) == {"access", "refresh", "session_id"}
    assert User.objects.get(email="dee@example.com").is_verified
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert api.get("/api/v1/me").json()["email"] == "dee@example.com"


def test_register_by_phone_normalises_e164(api, django_capture_on_commit_callbacks):
    response = register(api, django_capture_on_commit_callbacks, phone="+86 138 0013 8000")
    assert response.status_code == 201
    assert User.objects.get().phone == "+8613800138000"
    assert senders.SENT[0]["channel"] == "phone"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "12345"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({}, "phone"),
        ({"phone": "+8613800138000", "email": "a@b.co"}, "phone"),
        ({"email": "a@b.co", "password": "123"}, "password"),
        ({"email": "a@b.co", "display_name": ""}, "display_name"),
    ],
)
def test_register_bad_input(api, django_capture_on_commit_callbacks, body, field):
    error = assert_error(register(api, django_capture_on_commit_callbacks, **body), 400)
    assert field in error["fields"]
    assert not User.objects.exists()
    assert senders.SENT == []


def test_register_taken_by_verified_account_is_409(api, make_user, django_capture_on_commit_callbacks):
    make_user(handle="dee", email="dee@example.com")
    assert_error(
        register(api, django_capture_on_commit_callbacks, email="dee@example.com"), 409, "already_registered"
    )


def test_reregistering_an_unverified_account_takes_it_over(api, django_capture_on_commit_callbacks):
    register(api, django_capture_on_commit_callbacks, email="dee@example.com")
    first_code = senders.SENT[-1]["code"]
    VerificationCode.objects.update(created_at="2000-01-01T00:00:00Z")  # past the resend wait
    response = register(
        api, django_capture_on_commit_callbacks, email="dee@example.com", display_name="Real Dee"
    )
    assert response.status_code == 201
    assert User.objects.count() == 1 and User.objects.get().display_name == "Real Dee"
    second_code = senders.SENT[-1]["code"]
    if first_code != second_code:
        response = api.post(
            "/api/v1/auth/verify", {"login": "dee@example.com", "code": first_code}, format="json"
        )
        assert_error(response, 400, "invalid_code")
    response = api.post(
        "/api/v1/auth/verify", {"login": "dee@example.com", "code": second_code}, format="json"
    )
    assert response.status_code == 200


def test_wrong_codes_are_counted_and_kill_the_code(api, django_capture_on_commit_callbacks):
    register(api, django_capture_on_commit_callbacks, email="dee@example.com")
    code = senders.SENT[0]["code"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for attempt in range(5):
        response = api.post("/api/v1/auth/verify", {"login": "dee@example.com", "code": wrong}, format="json")
        assert_error(response, 400, "invalid_code")
        assert VerificationCode.objects.get().attempts == attempt + 1
    response = api.post("/api/v1/auth/verify", {"login": "dee@example.com", "code": code}, format="json")
    assert_error(response, 400, "invalid_code")
    assert not User.objects.get().is_verified


def test_expired_code_is_refused(api, django_capture_on_commit_callbacks):
    register(api, django_capture_on_commit_callbacks, email="dee@example.com")
    VerificationCode.objects.update(expires_at="2000-01-01T00:00:00Z")
    response = api.post(
        "/api/v1/auth/verify", {"login": "dee@example.com", "code": senders.SENT[0]["code"]}, format="json"
    )
    assert_error(response, 400, "invalid_code")


def test_resend_waits_a_minute_and_is_silent_for_unknown_logins(api, django_capture_on_commit_callbacks):
    register(api, django_capture_on_commit_callbacks, email="dee@example.com")
    response = api.post("/api/v1/auth/verify/resend", {"login": "dee@example.com"}, format="json")
    assert_error(response, 429, "code_recently_sent")
    VerificationCode.objects.update(created_at="2000-01-01T00:00:00Z")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/auth/verify/resend", {"login": "dee@example.com"}, format="json")
    assert response.status_code == 202
    assert len(senders.SENT) == 2
    # Unknown or verified logins: same answer, nothing sent (no account enumeration).
    assert (
        api.post("/api/v1/auth/verify/resend", {"login": "nobody@example.com"}, format="json").status_code
        == 202
    )
    assert len(senders.SENT) == 2


@pytest.mark.parametrize("login", ["dee", "DEE", "dee@example.com", "+8613800138000", "+86 138 0013 8000"])
def test_login_with_handle_phone_or_email(api, make_user, login):
    make_user(handle="dee", email="dee@example.com", phone="+8613800138000")
    response = api.post(
        "/api/v1/auth/login", {"login": login, "password": PASSWORD, "device_name": "Pixel"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert LoginSession.objects.get().device_name == "Pixel"


def test_wrong_password_then_lockout(api, make_user):
    make_user(handle="dee", email="dee@example.com")
    for _ in range(5):
        response = api.post("/api/v1/auth/login", {"login": "dee", "password": "wrong"}, format="json")
        assert response.status_code in (401, 429)
    assert_error(response, 429, "login_locked")
    # Locked for the account whichever identifier is typed, even with the right password.
    for login in ("dee", "dee@example.com"):
        response = api.post("/api/v1/auth/login", {"login": login, "password": PASSWORD}, format="json")
        assert_error(response, 429, "login_locked")


def test_wrong_password_is_401_with_our_shape(api, make_user):
    make_user(handle="dee")
    response = api.post("/api/v1/auth/login", {"login": "dee", "password": "nope"}, format="json")
    assert_error(response, 401, "invalid_credentials")
    response = api.post("/api/v1/auth/login", {"login": "ghost", "password": "nope"}, format="json")
    assert_error(response, 401, "invalid_credentials")


def login(api, handle="dee"):
    response = api.post("/api/v1/auth/login", {"login": handle, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_refresh_rotates_and_reuse_ends_the_session(api, make_user):
    make_user(handle="dee")
    first = login(api)
    response = api.post("/api/v1/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200
    second = response.json()
    assert second["refresh"] != first["refresh"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    assert api.get("/api/v1/me").status_code == 200

    # The rotated-away token comes back: somebody copied it. The whole session ends.
    api.credentials()
    response = api.post("/api/v1/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert_error(response, 401, "token_reused")
    assert LoginSession.objects.get().revoke_reason == "refresh_reuse"
    assert_error(
        api.post("/api/v1/auth/refresh", {"refresh": second["refresh"]}, format="json"),
        401,
        "session_revoked",
    )
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    assert_error(api.get("/api/v1/me"), 401, "session_revoked")


def test_refresh_bad_input(api):
    assert_error(
        api.post("/api/v1/auth/refresh", {"refresh": "garbage"}, format="json"), 401, "token_invalid"
    )
    assert_error(api.post("/api/v1/auth/refresh", {}, format="json"), 400, "invalid")


def test_access_token_is_not_a_refresh_token(api, make_user):
    make_user(handle="dee")
    tokens = login(api)
    assert_error(
        api.post("/api/v1/auth/refresh", {"refresh": tokens["access"]}, format="json"), 401, "token_invalid"
    )


def test_logout_revokes_the_session_and_its_refresh_tokens(api, make_user):
    make_user(handle="dee")
    tokens = login(api)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api.post("/api/v1/auth/logout", {}, format="json").status_code == 204
    assert_error(api.get("/api/v1/me"), 401, "session_revoked")
    api.credentials()
    assert_error(
        api.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json"),
        401,
        "session_revoked",
    )


def test_logout_with_only_a_refresh_token(api, make_user):
    make_user(handle="dee")
    tokens = login(api)
    assert api.post("/api/v1/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 204
    assert LoginSession.objects.get().revoked_at is not None
    assert_error(api.post("/api/v1/auth/logout", {}, format="json"), 400)


def test_sessions_list_and_revoke_another_device(api, make_user, client_for):
    dee = make_user(handle="dee")
    phone = client_for(dee)
    laptop = client_for(dee)
    sessions = phone.get("/api/v1/auth/sessions").json()
    assert len(sessions) == 2
    assert [s["current"] for s in sessions if s["id"] == phone.tokens["session_id"]] == [True]
    response = phone.delete(f"/api/v1/auth/sessions/{laptop.tokens['session_id']}")
    assert response.status_code == 204
    assert_error(laptop.get("/api/v1/me"), 401, "session_revoked")
    assert phone.get("/api/v1/me").status_code == 200
    assert len(phone.get("/api/v1/auth/sessions").json()) == 1


def test_an_expired_session_is_not_listed_as_open(make_user, client_for):
    dee = make_user(handle="dee")
    phone, old_laptop = client_for(dee), client_for(dee)
    LoginSession.objects.filter(pk=old_laptop.tokens["session_id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert [s["id"] for s in phone.get("/api/v1/auth/sessions").json()] == [phone.tokens["session_id"]]


def test_cannot_revoke_another_users_session(make_user, client_for):
    dee, eve = make_user(handle="dee"), make_user(handle="eve")
    dee_client, eve_client = client_for(dee), client_for(eve)
    assert_error(
        eve_client.delete(f"/api/v1/auth/sessions/{dee_client.tokens['session_id']}"), 404, "not_found"
    )
    assert dee_client.get("/api/v1/me").status_code == 200
    assert_error(eve_client.delete("/api/v1/auth/sessions/not-a-uuid"), 404)


def test_ticket_requires_auth_and_is_single_use(api, make_user, client_for):
    from accounts import services

    assert_error(api.post("/api/v1/realtime/ticket"), 401)
    dee_client = client_for(make_user(handle="dee"))
    response = dee_client.post("/api/v1/realtime/ticket")
    assert response.status_code == 201
    ticket = response.json()["ticket"]
    assert response.json()["expires_in"] == 60
    assert services.ws_ticket_redeem(ticket=ticket) == (dee_client.user.pk, dee_client.tokens["session_id"])
    assert services.ws_ticket_redeem(ticket=ticket) is None
    assert services.ws_ticket_redeem(ticket="made-up") is None


def test_auth_endpoints_are_throttled(api, monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"})
    ip = f"198.51.100.{uuid.uuid4().int % 250}"  # throttling counts per client address
    for _ in range(3):
        response = api.post(
            "/api/v1/auth/login", {"login": "ghost", "password": "x"}, format="json", REMOTE_ADDR=ip
        )
        assert response.status_code == 401
    response = api.post(
        "/api/v1/auth/login", {"login": "ghost", "password": "x"}, format="json", REMOTE_ADDR=ip
    )
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_code_email_goes_out_in_the_asker_language(
    api, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.VERIFICATION_SENDER = "accounts.senders.EmailSender"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/auth/register",
            {"email": "ru@example.com", "password": PASSWORD, "display_name": "Иван"},
            format="json",
            HTTP_ACCEPT_LANGUAGE="ru",
        )
    assert response.status_code == 201
    (message,) = mailoutbox
    assert message.to == ["ru@example.com"]
    assert "код" in message.body.lower() and message.subject != "Your superapp code"


def test_register_conflict_message_is_translated(api, make_user, django_capture_on_commit_callbacks):
    make_user(handle="dee", email="dee@example.com")
    response = api.post(
        "/api/v1/auth/register",
        {"email": "dee@example.com", "password": PASSWORD, "display_name": "D"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    assert_error(response, 409, "already_registered")
    assert "邮" in response.json()["error"]["message"]


def test_logging_out_stops_pushes_to_that_device(make_user, client_for):
    from superapp.core.push.models import PushDevice

    dee = make_user(handle="dee")
    phone, laptop = client_for(dee), client_for(dee)
    for client, token in ((phone, "aa" * 32), (laptop, "bb" * 32)):
        response = client.post("/api/v1/push/devices", {"platform": "ios", "token": token}, format="json")
        assert response.status_code == 201, response.json()
    assert phone.post("/api/v1/auth/logout", {}, format="json").status_code == 204
    assert PushDevice.objects.get(token="aa" * 32).disabled_at is not None
    assert PushDevice.objects.get(token="bb" * 32).disabled_at is None
