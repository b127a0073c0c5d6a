"""One error shape everywhere, also for 401/404/405/413/500 and malformed JSON."""

import pytest
from django.test import Client
from django.urls import path

from superapp import urls as root_urls

pytestmark = pytest.mark.django_db


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_401_without_token(api):
    assert_error(api.get("/api/v1/me"), 401, "not_authenticated")


def test_401_with_garbage_token(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert_error(api.get("/api/v1/me"), 401, "token_not_valid")


def test_404_unknown_api_path(api):
    assert_error(api.get("/api/v1/no-such-thing"), 404, "not_found")


def test_405_wrong_method(client_for, alice):
    assert_error(client_for(alice).delete("/api/v1/me"), 405, "method_not_allowed")


def test_malformed_json(client_for, alice):
    response = client_for(alice).generic("PATCH", "/api/v1/me", "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_request")


def test_validation_error_lists_fields(api):
    error = assert_error(api.post("/api/v1/auth/login", {}, format="json"), 400, "invalid")
    assert set(error["fields"]) == {"login", "password"}


def test_413_body_too_large(api, settings):
    settings.MAX_REQUEST_BYTES = 1000
    response = api.post("/api/v1/auth/login", {"login": "x" * 2000, "password": "y"}, format="json")
    assert_error(response, 413, "request_too_large")


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/payments/checkout/merchants/%00",  # a <str:> lookup PostgreSQL would refuse
        "/api/v1/pay/refunds/%00abc",
        "/api/v1/users/search?q=a%00b",
    ],
)
def test_nul_in_the_url_is_400_not_500(client_for, alice, url):
    assert_error(client_for(alice).get(url), 400, "malformed_request")


def _boom(request):
    raise RuntimeError("boom")


urlpatterns = [*root_urls.urlpatterns, path("boom", _boom)]
handler500 = root_urls.handler500


def test_500_is_json(settings):
    settings.ROOT_URLCONF = "tests.core.test_errors"
    client = Client(raise_request_exception=False)
    assert_error(client.get("/boom"), 500, "server_error")


def test_messages_follow_accept_language(api):
    response = api.get("/api/v1/me", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "身份认证信息未提供。"
    response = api.get("/api/v1/me", HTTP_ACCEPT_LANGUAGE="ru")
    assert response.json()["error"]["message"] == "Учетные данные не были предоставлены."
