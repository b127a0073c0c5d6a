"""Structured logs: one access line per request with its id; no secrets; valid JSON lines."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import path

from superapp import urls as root_urls
from superapp.core.logging import JsonFormatter, RequestIdFilter
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def access_records(caplog):
    return [r for r in caplog.records if r.name == "superapp.access"]


@pytest.fixture
def json_output(caplog):
    """Everything logged (every logger, DEBUG and up) through the production JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    caplog.set_level(logging.DEBUG)  # restored after the test
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def json_lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_access_record_per_request(caplog, client_for, alice):
    client = client_for(alice)
    with caplog.at_level(logging.INFO, logger="superapp.access"):
        response = client.get("/api/v1/me")
    assert response.status_code == 200
    [record] = access_records(caplog)
    assert record.request_id == response["X-Request-ID"]
    assert len(record.request_id) == 32
    assert record.method == "GET"
    assert record.path == "/api/v1/me"
    assert record.status == 200
    assert isinstance(record.duration_ms, float) and record.duration_ms >= 0
    assert record.user_id == alice.pk
    assert record.getMessage() == "GET /api/v1/me 200"


def test_each_request_gets_its_own_id(caplog, api):
    with caplog.at_level(logging.INFO, logger="superapp.access"):
        first = api.get("/healthz")
        second = api.get("/healthz")
    records = access_records(caplog)
    assert len(records) == 2
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert [r.request_id for r in records] == [first["X-Request-ID"], second["X-Request-ID"]]


def test_anonymous_errors_are_logged_too(caplog, api):
    with caplog.at_level(logging.INFO, logger="superapp.access"):
        response = api.get("/api/v1/me")
        missing = api.get("/no/such/page")
    assert response.status_code == 401 and missing.status_code == 404
    records = access_records(caplog)
    assert [(r.status, r.user_id) for r in records] == [(401, None), (404, None)]


def test_a_sane_incoming_request_id_is_reused(caplog, api):
    incoming = f"edge-{uuid.uuid4()}"
    with caplog.at_level(logging.INFO, logger="superapp.access"):
        response = api.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] == incoming
    assert access_records(caplog)[0].request_id == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "short",
        "has spaces in it",
        "x" * 129,
        "line\nbreak-injected",
        "trailing-newline\n",
        'quote"s-and-<tags>',
        "ünïcödé-request",
    ],
)
def test_an_insane_incoming_request_id_is_replaced(incoming, caplog, api):
    with caplog.at_level(logging.INFO, logger="superapp.access"):
        response = api.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32
    assert access_records(caplog)[0].request_id == response["X-Request-ID"]


def test_the_logged_path_has_no_query_string(caplog, api):
    with caplog.at_level(logging.INFO, logger="superapp.access"):
        api.get("/healthz?ticket=secret-ticket-value")
    [record] = access_records(caplog)
    assert record.path == "/healthz"
    assert "secret-ticket-value" not in record.getMessage()


def test_login_logs_no_password_token_or_query_string(json_output, api, alice):
    json_output.seek(0)
    json_output.truncate()  # only what the requests log (factory-boy logs the test password at DEBUG)
    ok = api.post(
        "/api/v1/auth/login?next=secret-query-value", {"login": "alice", "password": PASSWORD}, format="json"
    )
    assert ok.status_code == 200
    tokens = ok.json()
    wrong = api.post(
        "/api/v1/auth/login", {"login": "alice", "password": "wrong-password-4711"}, format="json"
    )
    assert wrong.status_code == 401
    refreshed = api.post(
        "/api/v1/auth/refresh?token=secret-query-2", {"refresh": tokens["refresh"]}, format="json"
    )
    assert refreshed.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    assert api.get("/api/v1/me").status_code == 200

    output = json_output.getvalue()
    lines = json_lines(json_output)
    access = [line for line in lines if line["name"] == "superapp.access"]
    assert [(line["path"], line["status"]) for line in access] == [
        ("/api/v1/auth/login", 200),
        ("/api/v1/auth/login", 401),
        ("/api/v1/auth/refresh", 200),
        ("/api/v1/me", 200),
    ]
    assert access[-1]["user_id"] == alice.pk
    secrets = [
        PASSWORD,
        "wrong-password-4711",
        tokens["access"],
        tokens["refresh"],
        *refreshed.json().values(),
        "secret-query-value",
        "secret-query-2",
    ]
    for secret in secrets:
        assert secret not in output
    # Not even a recognisable piece of a token (its signature).
    for token in (tokens["access"], tokens["refresh"]):
        assert token.rsplit(".", 1)[-1] not in output


def _boom(request):
    raise RuntimeError("boom")


urlpatterns = [*root_urls.urlpatterns, path("boom", _boom)]
handler500 = root_urls.handler500


def test_django_error_records_do_not_leak_the_query_string(json_output, settings):
    """django.request attaches the request to its record; its repr holds the query string."""
    settings.ROOT_URLCONF = "tests.core.test_logging"
    response = Client(raise_request_exception=False).get("/boom?ticket=secret-ticket-in-error")
    assert response.status_code == 500
    lines = json_lines(json_output)
    error = next(line for line in lines if line["name"] == "django.request")
    assert error["levelname"] == "ERROR"
    assert error["path"] == "/boom"
    assert error["request_id"] == response["X-Request-ID"]
    assert "RuntimeError: boom" in error["exc_info"]
    assert "secret-ticket-in-error" not in json_output.getvalue()


def test_json_formatter_writes_one_valid_line_with_the_extra_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("superapp.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception(
                "two\nlines \u201cquoted\u201d 你好",
                extra={
                    "request_id": "abc12345",
                    "status": 500,
                    "duration_ms": 1.25,
                    "user_id": None,
                    "at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
                    "ref": uuid.UUID(int=1),
                    "opaque": object(),
                },
            )
        logger.info("outside a request")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # newlines in the message and the traceback are escaped
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "two\nlines \u201cquoted\u201d 你好"
    assert first["levelname"] == "ERROR"
    assert first["name"] == "superapp.test.json"
    assert first["asctime"]
    assert first["status"] == 500 and first["duration_ms"] == 1.25 and first["user_id"] is None
    assert first["at"] == "2025-01-02T03:04:05+00:00"
    assert first["ref"] == str(uuid.UUID(int=1))
    assert first["opaque"].startswith("<object object")
    assert "ValueError: bad" in first["exc_info"]
    # An explicit request id is kept; without one, the filter adds the current one ("-" here).
    assert first["request_id"] == "abc12345"
    assert second["request_id"] == "-" and second["message"] == "outside a request"
