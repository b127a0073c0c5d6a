"""``Idempotency-Key`` plumbing (Stripe semantics), on a tiny view defined here."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from superapp.core.errors import ValidationFailed
from superapp.core.idempotency import idempotency_keys_purge, idempotent
from superapp.core.models import IdempotencyKey
from tests.threads import run_together

CALLS: list[dict] = []


class ChargeView(APIView):
    @idempotent
    def post(self, request):
        CALLS.append(dict(request.data))
        if request.data.get("fail") == "400":
            raise ValidationFailed(fields={"amount": ["bad"]})
        if request.data.get("fail") == "500":
            return Response({"oops": True}, status=500)
        if request.data.get("slow"):
            time.sleep(0.5)
        return Response({"charged": request.data.get("amount"), "call": len(CALLS)}, status=201)


class NoteView(APIView):
    @idempotent
    def post(self, request):
        CALLS.append(dict(request.data))
        if request.data.get("empty"):
            return Response(status=204)
        return Response({"note": request.data.get("note"), "call": len(CALLS)}, status=201)


urlpatterns = [path("charge", ChargeView.as_view()), path("note", NoteView.as_view())]
pytestmark = pytest.mark.urls(__name__)


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def _post(client, body, key="k1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/charge", body, format="json", **headers)


@pytest.mark.django_db
def test_same_key_and_body_replays_the_first_response(client_for, alice):
    client = client_for(alice)
    first = _post(client, {"amount": 5})
    second = _post(client, {"amount": 5})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() == {"charged": 5, "call": 1}
    assert second["Idempotent-Replayed"] == "true"
    assert len(CALLS) == 1


@pytest.mark.django_db
def test_same_key_other_body_is_a_conflict(client_for, alice):
    client = client_for(alice)
    _post(client, {"amount": 5})
    response = _post(client, {"amount": 6})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.django_db
def test_keys_are_per_user(client_for, alice, bob):
    _post(client_for(alice), {"amount": 5})
    assert _post(client_for(bob), {"amount": 5}).json()["call"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("key", [None, "", "x" * 256])
def test_a_key_is_required(client_for, alice, key):
    response = _post(client_for(alice), {"amount": 5}, key=key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert CALLS == []


@pytest.mark.django_db
def test_client_errors_are_stored_and_replayed(client_for, alice):
    client = client_for(alice)
    first = _post(client, {"fail": "400"})
    second = _post(client, {"fail": "400"})
    assert first.status_code == second.status_code == 400
    assert second.json() == first.json()
    assert len(CALLS) == 1


@pytest.mark.django_db
def test_server_errors_release_the_key(client_for, alice):
    client = client_for(alice)
    assert _post(client, {"fail": "500"}).status_code == 500
    assert _post(client, {"fail": "500"}).status_code == 500
    assert len(CALLS) == 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_an_expired_key_runs_again_and_is_purged(client_for, alice):
    client = client_for(alice)
    _post(client, {"amount": 5})
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert _post(client, {"amount": 5}).json()["call"] == 2
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_keys_purge() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_execute_once(client_for, alice):
    client = client_for(alice)

    def run():
        return _post(client, {"amount": 5, "slow": True}).status_code

    outcome = run_together([run] * 6)
    assert outcome.raised == []
    assert len(CALLS) == 1
    assert sorted(outcome.results) == [201] + [409] * 5
    replay = _post(client, {"amount": 5, "slow": True})
    assert replay.status_code == 201 and replay.json()["call"] == 1


@pytest.mark.django_db
def test_stored_bodies_replay_exactly(client_for, alice):
    client = client_for(alice)
    note = 'red packet \u7ea2\u5305 \u2028 "quoted" \U0001f9e7'
    first = client.post("/note", {"note": note}, format="json", HTTP_IDEMPOTENCY_KEY="n1")
    second = client.post("/note", {"note": note}, format="json", HTTP_IDEMPOTENCY_KEY="n1")
    assert first.json() == second.json() == {"note": note, "call": 1}
    empty = [client.post("/note", {"empty": True}, format="json", HTTP_IDEMPOTENCY_KEY="n2") for _ in "ab"]
    assert [r.status_code for r in empty] == [204, 204] and empty[1]["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get(key="n2").response_body is None
    assert len(CALLS) == 2


@pytest.mark.django_db
def test_claim_and_storage_are_one_statement_each(client_for, alice, django_assert_num_queries):
    client = client_for(alice)
    client.post("/note", {"note": "warm"}, format="json", HTTP_IDEMPOTENCY_KEY="w")  # the session
    with django_assert_num_queries(3):  # the user's session, the claim, the stored response
        client.post("/note", {"note": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="n3")
