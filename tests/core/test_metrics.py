"""/metrics: Django's request counters and latency, open WebSockets, Celery tasks."""

from __future__ import annotations

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from superapp.asgi import application
from tests.conftest import login_tokens


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, labels): value}`` from the Prometheus text format."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape() -> dict[tuple[str, frozenset], float]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


async def ascrape() -> dict[tuple[str, frozenset], float]:
    """Scrape through the ASGI application, as a Prometheus server would."""
    response = await HttpCommunicator(
        application, "GET", "/metrics", headers=[(b"host", b"localhost")]
    ).get_response(timeout=10)
    assert response["status"] == 200
    return parse(response["body"].decode())


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.django_db
def test_request_counters_and_latency_histograms():
    before = scrape()
    client = Client()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("django_http_requests_total_by_method_total", method="GET") >= 3
    assert (
        delta(
            "django_http_responses_total_by_status_view_method_total",
            status="200",
            view="healthz",
            method="GET",
        )
        == 3
    )
    # Latency: a histogram per view and method, and one around all middlewares.
    histogram = "django_http_requests_latency_seconds_by_view_method"
    assert delta(f"{histogram}_count", view="healthz", method="GET") == 3
    assert delta(f"{histogram}_bucket", view="healthz", method="GET", le="+Inf") == 3
    assert delta(f"{histogram}_sum", view="healthz", method="GET") > 0
    assert delta("django_http_requests_latency_including_middlewares_seconds_count") >= 3
    assert any(name == f"{histogram}_bucket" and dict(labels)["le"] == "0.1" for name, labels in after)


@pytest.fixture
def access_token(make_user):
    return login_tokens(make_user(handle="socket_user"))["access"]


@pytest.mark.django_db(transaction=True)
async def test_open_websockets_gauge_follows_connections(access_token):
    gauge = "superapp_websockets_open"
    before = value(await ascrape(), gauge)
    accepted_before = value(await ascrape(), "superapp_websocket_connections_total", outcome="accepted")

    socket = WebsocketCommunicator(
        application, "/ws/", subprotocols=["superapp.v1", f"superapp.auth.{access_token}"]
    )
    connected, subprotocol = await socket.connect(timeout=10)
    assert connected and subprotocol == "superapp.v1"
    samples = await ascrape()
    assert value(samples, gauge) == before + 1
    assert value(samples, "superapp_websocket_connections_total", outcome="accepted") == accepted_before + 1

    await socket.disconnect()
    assert value(await ascrape(), gauge) == before


@pytest.mark.django_db(transaction=True)
async def test_refused_websocket_is_counted_and_not_open():
    before = await ascrape()
    socket = WebsocketCommunicator(application, "/ws/", subprotocols=["superapp.v1", "superapp.auth.garbage"])
    connected, _ = await socket.connect(timeout=10)
    assert connected  # accepted, then closed at once with a code the browser can read
    assert (await socket.receive_output(timeout=10))["type"] == "websocket.send"
    assert (await socket.receive_output(timeout=10))["type"] == "websocket.close"
    after = await ascrape()
    assert value(after, "superapp_websockets_open") == value(before, "superapp_websockets_open")
    refused = "superapp_websocket_connections_total"
    assert value(after, refused, outcome="refused") == value(before, refused, outcome="refused") + 1
    await socket.disconnect()


@pytest.mark.django_db
def test_celery_task_runs_are_counted():
    from accounts.tasks import purge_expired_verification_codes

    task = "accounts.purge_expired_verification_codes"
    before = scrape()
    purge_expired_verification_codes.delay()  # eager in tests: the same signals as in a worker
    purge_expired_verification_codes.delay()
    after = scrape()
    counter = "superapp_celery_tasks_total"
    assert (
        value(after, counter, task=task, state="SUCCESS")
        == value(before, counter, task=task, state="SUCCESS") + 2
    )
    seconds = "superapp_celery_task_seconds_count"
    assert value(after, seconds, task=task) == value(before, seconds, task=task) + 2


@pytest.mark.django_db
def test_failed_celery_task_is_counted_as_failure(monkeypatch):
    from accounts import tasks

    def broken_sender():
        raise OSError("SMS gateway down")

    monkeypatch.setattr(tasks, "get_sender", broken_sender)
    monkeypatch.setattr(tasks.send_verification_code, "max_retries", 0)
    task = "accounts.send_verification_code"
    counter = "superapp_celery_tasks_total"
    before = scrape()
    with pytest.raises(OSError):
        tasks.send_verification_code.delay(channel="email", destination="a@example.com", code="123456")
    after = scrape()
    # A worker labels this FAILURE; an eager run (which re-raises) must say the same.
    assert (
        value(after, counter, task=task, state="FAILURE")
        == value(before, counter, task=task, state="FAILURE") + 1
    )
    assert value(after, counter, task=task, state="SUCCESS") == value(
        before, counter, task=task, state="SUCCESS"
    )
    assert not any(name == counter and dict(labels)["state"] == "UNKNOWN" for name, labels in after)


def test_metrics_token_guards_the_endpoint(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200 and b"django_http_requests" in response.content
