"""Shared fixtures. The suite runs against the real PostgreSQL and Redis (see settings_test)."""

from __future__ import annotations

import sys

import pytest
from asgiref.testing import ApplicationCommunicator as AsgirefCommunicator
from channels.testing.application import ApplicationCommunicator as ChannelsCommunicator
from django.db import transaction
from django.utils import translation
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Friendship

from .factories import UserFactory

PASSWORD = "correct horse battery"

# Tests of psycopg 3 connections themselves: the psycopg2 pass hides psycopg 3 (settings.py), so
# they run in the psycopg 3 pass (Makefile PSYCOPG3_TESTS) only.
collect_ignore = ["core/test_dbpool_psycopg3.py"] if sys.modules.get("psycopg", 0) is None else []


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _celery_join_guard():
    """Celery's eager ``apply()`` sets a process-wide "join will block" flag and restores the value
    it saw (``denied_join_result``): two threads running eager tasks at once (the concurrency
    tests) can leave it set, and a later ``.delay().get()`` in the same process then raises
    "Never call result.get() within a task!". Start every test with it cleared."""
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)


@pytest.fixture(autouse=True, scope="session")
def _sockets_close_their_connections():
    """channels' test communicator (``WebsocketCommunicator``) swaps ``channels.db``'s
    ``close_old_connections`` for a no-op while a test awaits a socket, for Django's ``TestCase``
    and its one connection. The swap is process-wide: every ``database_sync_to_async`` that ends
    meanwhile, in any thread, keeps its connection; and sockets awaited side by side restore each
    other's swaps out of order, which leaves the no-op in place for every later test. Threads then
    held connections after their frames, and with Django's pool (``DB_POOL``) each thread that
    ended with its test's event loop took a pool slot with it, for good: the pool ran dry. Socket
    tests here run with ``django_db(transaction=True)`` (and thread-sensitive code in a thread of
    its own, not the test's), so nothing needs the swap: the communicator is asgiref's, as is.
    (For the session, apart from the tests' own ``monkeypatch``, which a test may undo.)"""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ChannelsCommunicator, "send_input", AsgirefCommunicator.send_input)
        patch.setattr(ChannelsCommunicator, "receive_output", AsgirefCommunicator.receive_output)
        yield


@pytest.fixture(autouse=True)
def _english():
    """A request with Accept-Language leaves its language active in the thread (LocaleMiddleware
    never deactivates); start and leave every test in the default language."""
    translation.activate("en")
    yield
    translation.deactivate()


@pytest.fixture
def make_user(db):
    return UserFactory


@pytest.fixture
def api():
    return APIClient()


def login_tokens(user) -> dict:
    login = account_services.session_create(user=user, device_name="pytest")
    return {**login.tokens, "session_id": str(login.session.id)}


@pytest.fixture
def client_for(db):
    """``client_for(user)`` -> an APIClient sending that user's access token."""

    def make(user):
        client = APIClient()
        tokens = login_tokens(user)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
        client.tokens = tokens
        client.user = user
        return client

    return make


def befriend(a, b) -> None:
    with transaction.atomic():
        Friendship.objects.bulk_create(
            [Friendship(user=a, friend=b), Friendship(user=b, friend=a)], ignore_conflicts=True
        )


@pytest.fixture
def alice(make_user):
    return make_user(handle="alice")


@pytest.fixture
def bob(make_user):
    return make_user(handle="bob")


@pytest.fixture
def carol(make_user):
    return make_user(handle="carol")
