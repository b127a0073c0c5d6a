"""Scenario ``breakdown``: where the CPU of one authenticated ``GET /api/v1/me`` goes.

In one Django process (production settings, psycopg2, persistent connection, no server, no
socket), each step of the request is run many times and timed in CPU time (the best of 5
rounds); the anchor is the anchor view's query (one primary-key SELECT through the ORM), and each
figure is printed as a multiple of it. The whole request is timed through Django's handler (the test client), beside the
anchor view through the same handler. Run as a child process so the settings are the bench's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .env import ROOT, server_env
from .stacks import PSYCOPG2_PERSISTENT

ROUNDS = 5
RAW_JOIN = (
    "SELECT u.* FROM accounts_user u JOIN accounts_loginsession s ON s.user_id = u.id "
    "WHERE s.id = %s AND s.revoked_at IS NULL"
)


def run(*, rounds: int, seconds: float) -> str:
    env = server_env(
        db=PSYCOPG2_PERSISTENT, app_name="b_breakdown", settings="bench.anchor_settings", LOG_LEVEL="WARNING"
    )
    out = subprocess.run(
        [sys.executable, "-m", "bench.breakdown", str(seconds)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    steps = json.loads(out.strip().splitlines()[-1])
    anchor = steps["anchor: ORM pk SELECT (values().first())"]
    lines = [
        "### breakdown: CPU per step of GET /api/v1/me, in one process (no server, no socket)",
        "",
        "| step | CPU µs per call | x the anchor query |",
        "|---|---:|---:|",
    ]
    for name, micros in steps.items():
        lines.append(f"| {name} | {micros:,.0f} | {micros / anchor:.2f} |")
    lines += [
        "",
        "Access log lines are off here (LOG_LEVEL=WARNING) so that only the request's own work is timed; "
        "the whole-request rows include Django's handler and every middleware.",
    ]
    return "\n".join(lines)


def _measure(seconds: float) -> dict[str, float]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import clear_url_caches, set_urlconf
    from rest_framework.renderers import JSONRenderer
    from rest_framework_simplejwt.authentication import JWTAuthentication

    from accounts.api.serializers import MeSerializer
    from accounts.authentication import SessionJWTAuthentication
    from accounts.models import LoginSession

    from . import anchor_urls

    user = get_user_model().objects.get(handle="alice")
    session = LoginSession.objects.filter(user=user, revoked_at__isnull=True).order_by("-pk").first()
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(user)
    token["sid"] = str(session.pk)
    raw = str(token).encode()
    jwt_auth, session_auth = JWTAuthentication(), SessionJWTAuthentication()
    validated = jwt_auth.get_validated_token(raw)
    me_user = session_auth.get_user(validated)

    # The full request through Django: the anchor view and /me share one urlconf here.
    from django.urls import include, path

    anchor_urls.urlpatterns.append(path("", include("superapp.urls")))
    clear_url_caches()
    set_urlconf(None)
    client = Client(HTTP_HOST="127.0.0.1")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw.decode()}"}
    assert client.get("/api/v1/me", **auth).status_code == 200
    assert client.get(f"/anchor/user/{user.pk}").status_code == 200

    def sql_only():
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, handle, display_name FROM accounts_user WHERE id = %s", [user.pk])
            cursor.fetchone()

    steps = {
        "anchor: ORM pk SELECT (values().first())": lambda: (
            get_user_model().objects.filter(pk=user.pk).values("id", "handle", "display_name").first()
        ),
        "the same SELECT as raw SQL on Django's cursor": sql_only,
        "JWT decode + validate (simplejwt; a token's first request in a process)": lambda: (
            jwt_auth.get_validated_token(raw)
        ),
        "JWT check of a remembered token (accounts/authentication.py)": lambda: (
            session_auth.get_validated_token(raw)
        ),
        "user + open session (accounts/authentication.py: one statement, Model.from_db)": lambda: (
            session_auth.get_user(validated)
        ),
        "what-if (before): the same join through User.objects.raw()": lambda: next(
            iter(get_user_model().objects.raw(RAW_JOIN, [session.pk]))
        ),
        "what-if (not in the app): the ORM, select_related().first()": lambda: (
            LoginSession.objects.select_related("user").filter(pk=session.pk, revoked_at__isnull=True).first()
        ),
        "what-if (not in the app): the ORM, User.objects.get() across the join": lambda: (
            get_user_model().objects.get(
                login_sessions__pk=session.pk, login_sessions__revoked_at__isnull=True
            )
        ),
        "MeSerializer(user).data + JSON render": lambda: JSONRenderer().render(MeSerializer(me_user).data),
        "whole request: anchor view (Django handler + middleware)": lambda: client.get(
            f"/anchor/user/{user.pk}"
        ),
        "whole request: GET /api/v1/me (Django handler + middleware)": lambda: client.get(
            "/api/v1/me", **auth
        ),
    }
    budget = max(seconds / 6, 0.3)
    result = {}
    for name, fn in steps.items():
        per_round = []
        for _ in range(ROUNDS):
            n, started = 0, time.process_time()
            while time.process_time() - started < budget:
                for _ in range(20):
                    fn()
                n += 20
            per_round.append((time.process_time() - started) / n * 1e6)
        result[name] = min(per_round)  # noise from elsewhere only ever adds time
    return result


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.anchor_settings")
    print(json.dumps(_measure(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)))
