"""Settings shapes (embedded default, production), deploy checks, health and readiness."""

import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from accounts.models import Friendship, User
from tests.processes import ROOT

pytestmark = pytest.mark.django_db

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'], "
    "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'debug': s.DEBUG, 'embedded': s.EMBEDDED, 'cache': s.CACHES['default']['BACKEND']}))"
)


def run_python(code, env, tmp_path):
    set_by_tests = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "SECURE_SSL_REDIRECT", "LOG_FORMAT",
                    "DB_PREPARED_STATEMENTS")  # fmt: skip
    base = {k: v for k, v in os.environ.items() if k not in set_by_tests}
    base.update(DJANGO_SETTINGS_MODULE="superapp.settings", SUPERAPP_VAR_DIR=str(tmp_path / "var"), **env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_embedded_default_needs_no_environment(tmp_path):
    result = run_python(PROBE, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "db": "django.db.backends.sqlite3",
        "layer": "channels.layers.InMemoryChannelLayer",
        "eager": True,
        "debug": False,
        "embedded": True,
        "cache": "django.core.cache.backends.locmem.LocMemCache",
    }


def test_production_needs_a_secret_key(tmp_path):
    result = run_python(PROBE, {"DATABASE_URL": "postgres://postgres@127.0.0.1/x"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_shape(tmp_path):
    env = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SECRET_KEY": "k" * 50,
    }
    result = run_python(PROBE, env, tmp_path)
    assert result.returncode == 0, result.stderr
    shape = json.loads(result.stdout.splitlines()[-1])
    assert shape["db"] == "django.db.backends.postgresql"
    assert shape["layer"] == "superapp.core.layers.BatchPubSubChannelLayer"  # Pub/Sub + batches
    assert shape["eager"] is False and shape["debug"] is False and shape["embedded"] is False


STATEMENT_TIMEOUT_PROBE = (
    "import django; django.setup(); from django.db import connection; c = connection.cursor(); "
    "c.execute('SHOW statement_timeout'); print(c.fetchone()[0]); c.execute('SELECT pg_sleep(1)'); print('slept')"
)


@pytest.mark.parametrize(
    ("entry", "timeout", "expected"),
    [
        ("superapp.wsgi", None, "30s"),
        ("superapp.wsgi", "200", "200ms"),
        ("superapp.asgi", None, "30s"),
        ("", None, "0"),
    ],
)
def test_server_processes_cap_statements(tmp_path, entry, timeout, expected):
    """gunicorn/uvicorn processes cancel a runaway statement; Celery and commands do not."""
    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "SECRET_KEY": "k" * 50}
    if timeout:
        env["DB_STATEMENT_TIMEOUT"] = timeout
    code = (f"import {entry}; " if entry else "") + STATEMENT_TIMEOUT_PROBE
    result = run_python(code, env, tmp_path)
    assert result.stdout.splitlines()[0] == expected, result.stderr
    if expected == "200ms":
        assert result.returncode != 0 and "canceling statement due to statement timeout" in result.stderr
    else:
        assert result.returncode == 0 and result.stdout.splitlines()[-1] == "slept", result.stderr


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    env = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghij",
        "PAYMENTS_IDENTITY_KEY": "a-dedicated-identity-hash-key-0123456789-abcdefghij",
    }
    code = "import django, sys; from django.core.management import call_command; django.setup(); call_command('check', deploy=True, fail_level='WARNING')"
    result = run_python(code, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthz_touches_nothing(api):
    response = api.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(api, settings):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unreachable"}}


def test_seed_demo_is_idempotent(capsys):
    from messaging.models import Conversation, Message
    from moments.models import Comment, Like, Post
    from payments import selectors as payment_selectors
    from payments.ledger import ledger_reconcile
    from payments.services import pin_verify

    call_command("seed_demo")
    call_command("seed_demo")
    assert sorted(User.objects.values_list("handle", flat=True)) == ["alice", "bob", "carol"]
    assert Friendship.objects.count() == 6  # three pairs, both directions
    out = capsys.readouterr().out
    assert "alice / superapp-demo" in out and "Payment PIN of every demo wallet: 123456" in out
    alice = User.objects.get(handle="alice")
    assert alice.check_password("superapp-demo") and alice.is_verified
    # One direct chat and one group, each line once; two posts, a like and a comment; funded wallets.
    assert Conversation.objects.filter(kind=Conversation.Kind.DIRECT).count() == 1
    assert Conversation.objects.filter(kind=Conversation.Kind.GROUP, name="Weekend hike").count() == 1
    texts = list(Message.objects.exclude(kind=Message.Kind.SYSTEM).values_list("text", flat=True))
    assert len(texts) == 3 and "I'll bring the snacks." in texts
    assert (Post.objects.count(), Like.objects.count(), Comment.objects.count()) == (2, 1, 1)
    for user in User.objects.all():
        assert payment_selectors.wallet_balance(user_id=user.pk) == 100_000
        pin_verify(user_id=user.pk, pin="123456")  # raises if the PIN were not set
    assert ledger_reconcile().ok
