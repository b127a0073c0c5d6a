"""Where a transfer's and a grab's CPU goes, in one process: ``python -m bench.payments_profile [n]``.

Run after ``bench.payments_transfers`` (it uses the 10,000-wallet shape that scenario leaves in
``superapp_pay_bench2``) or after ``bench.payments_grabs`` (the 2,001-member group), with nothing
else of the bench running (or point it at a seeded copy of your own with ``PROFILE_DATABASE_URL``
and ``PROFILE_REDIS_URL``: ``bench.payments_seed wallets 10000 5 <tokens.json>`` after ``migrate``
loads the shape). A child process with the bench's environment calls, one at a time:

* ``transfer_create`` between random friends, ``n`` times;
* ``POST /api/v1/payments/transfers`` through Django's whole stack in-process (``django.test.Client``:
  middleware, DRF, JWT, Idempotency-Key, the service, rendering, the access log line; no socket,
  no gunicorn, no nginx), ``n`` times;
* ``red_packet_grab`` on 100-share packets in the big group, up to 300 times.

Steps are timed by wrapping the functions named below with a CPU clock (``time.thread_time``:
waiting for PostgreSQL or Redis costs nothing); a step inside another step of the same label is
not counted twice. A handful of wrappers cost nothing measurable, unlike cProfile (its cost per
Python call quadrupled the figures) or a sampler (py-spy could not tell waiting from running
on this VM). Printed: the SQL statements and commits of one call, and CPU ms per call by step.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter

from .env import ROOT
from .payments_common import PIN, django_env

# (label, module, attribute): each attribute is replaced by a timed wrapper. "a.B.c" = method c of B.
TRANSFER_STEPS = [
    ("transfer_create, all of it", "payments.services", "transfer_create"),
    ("  the money transaction (`_transfer_create`, its commit and on-commit hooks)", "payments.services",
     "_transfer_create"),
    ("    the chat's rule before the PIN (`direct_message_check`: friendship, blocks)", "messaging.selectors",
     "direct_message_check"),
    ("    the payer's settings row locked (one statement)", "payments.services", "_payer_lock"),
    ("    the PIN judged (HMAC; a counted try or a reset written when needed)", "payments.services", "_pin_outcome"),
    ("    `_transfer_reads` (receiver's auto-accept, today's spending, 3 accounts, the id: one statement)",
     "payments.services", "_transfer_reads"),
    ("    `ledger_post_rows` (locks, balances, entry, postings, the transfer row: one statement)",
     "payments.services", "ledger_post_rows"),
    ("    `payment_message_post` (the chat's row lock, the message, publishing)", "messaging.services",
     "payment_message_post"),
    ("      `publish_many` (stream heads, 6 event rows)", "superapp.core.events", "publish_many"),
    ("    COMMIT", "django.db.backends.base.base.BaseDatabaseWrapper", "_commit"),
    ("    on-commit hooks: the doorbell (channel layer, Redis), push scheduling (presence, Celery)",
     "django.db.backends.base.base.BaseDatabaseWrapper", "run_and_clear_commit_hooks"),
    ("      push scheduling (`notifications._schedule`: presence, window, due set)", "messaging.notifications",
     "_schedule"),
    ("        of which Celery enqueues (`apply_async`: once per due set, not per transfer)", "celery.app.task.Task",
     "apply_async"),
]  # fmt: skip
GRAB_STEPS = [
    ("red_packet_grab, all of it", "payments.red_packets", "red_packet_grab"),
    ("  access check (the chat's membership, one query)", "messaging.selectors", "payment_message_access"),
    ("  the money transaction (`_grab`, its commit and on-commit hooks)", "payments.red_packets", "_grab"),
    ("    account lookups (`account_for` x2)", "payments.red_packets", "account_for"),
    ("    account lookups (`account_for` x2)", "payments.red_packets", "wallet_for"),
    ("    account lookups (`account_for` x2)", "payments.ledger", "account_for"),
    ("    `ledger_post` (lock, entry, postings, balances)", "payments.red_packets", "ledger_post"),
    ("    `publish` (stream heads, 2 events)", "superapp.core.events", "publish_many"),
    ("    COMMIT", "django.db.backends.base.base.BaseDatabaseWrapper", "_commit"),
    ("    on-commit hook: the doorbell (channel layer, Redis)", "django.db.backends.base.base.BaseDatabaseWrapper",
     "run_and_clear_commit_hooks"),
]  # fmt: skip
_MW = "  the other Django middleware (security, session, locale, common, CSRF, auth, messages, clickjacking)"
HTTP_STEPS = [
    ("the request through Django, all of it", "django.test.client.Client", "post"),
    ("  Django's handler: middleware, URL, the view (`BaseHandler.get_response`)", "django.core.handlers.base.BaseHandler",
     "get_response"),
    ("  Django signals (request started/finished: old connections closed; model saves)",
     "django.dispatch.dispatcher.Signal", "send"),
    ("  URL resolving", "django.urls.resolvers.URLResolver", "resolve"),
    ("  DRF's dispatch (`APIView.dispatch`: all below)", "rest_framework.views.APIView", "dispatch"),
    ("  DRF's `initial` (authentication, permissions, throttles, content negotiation)", "rest_framework.views.APIView",
     "initial"),
    ("  authentication (JWT check, the user and session in one SQL join)",
     "rest_framework_simplejwt.authentication.JWTAuthentication", "authenticate"),
    ("  parsing the JSON body", "rest_framework.parsers.JSONParser", "parse"),
    ("  Idempotency-Key: claim the key", "superapp.core.idempotency", "_claim"),
    ("  Idempotency-Key: the request's fingerprint", "superapp.core.idempotency", "request_fingerprint"),
    ("  Idempotency-Key: the response stored", "superapp.core.idempotency", "_store"),
    ("  the input serializer (`TransferCreateSerializer` validation)", "payments.api.views", "_valid"),
    ("  `transfer_create` (the service, as above)", "payments.services", "transfer_create"),
    ("  the output serializer (`TransferSerializer`)", "payments.api.serializers.TransferSerializer",
     "to_representation"),
    ("  DRF's `finalize_response` (renderer chosen, headers)", "rest_framework.views.APIView", "finalize_response"),
    ("  rendering the JSON response", "rest_framework.renderers.JSONRenderer", "render"),
    ("  the access log line (JSON, to stdout)", "logging.Logger", "handle"),
    ("  Prometheus metrics (django-prometheus middleware)", "django_prometheus.middleware.PrometheusBeforeMiddleware",
     "process_request"),
    ("  Prometheus metrics (django-prometheus middleware)", "django_prometheus.middleware.PrometheusBeforeMiddleware",
     "process_response"),
    ("  Prometheus metrics (django-prometheus middleware)", "django_prometheus.middleware.PrometheusAfterMiddleware",
     "process_request"),
    ("  Prometheus metrics (django-prometheus middleware)", "django_prometheus.middleware.PrometheusAfterMiddleware",
     "process_view"),
    ("  Prometheus metrics (django-prometheus middleware)", "django_prometheus.middleware.PrometheusAfterMiddleware",
     "process_response"),
    (_MW, "django.middleware.security.SecurityMiddleware", "process_request"),
    (_MW, "django.middleware.security.SecurityMiddleware", "process_response"),
    (_MW, "django.contrib.sessions.middleware.SessionMiddleware", "process_request"),
    (_MW, "django.contrib.sessions.middleware.SessionMiddleware", "process_response"),
    (_MW, "django.middleware.locale.LocaleMiddleware", "process_request"),
    (_MW, "django.middleware.locale.LocaleMiddleware", "process_response"),
    (_MW, "django.middleware.common.CommonMiddleware", "process_request"),
    (_MW, "django.middleware.common.CommonMiddleware", "process_response"),
    (_MW, "django.middleware.csrf.CsrfViewMiddleware", "process_request"),
    (_MW, "django.middleware.csrf.CsrfViewMiddleware", "process_view"),
    (_MW, "django.middleware.csrf.CsrfViewMiddleware", "process_response"),
    (_MW, "django.contrib.auth.middleware.AuthenticationMiddleware", "process_request"),
    (_MW, "django.contrib.messages.middleware.MessageMiddleware", "process_request"),
    (_MW, "django.contrib.messages.middleware.MessageMiddleware", "process_response"),
    (_MW, "django.middleware.clickjacking.XFrameOptionsMiddleware", "process_response"),
]  # fmt: skip
DRIVER = ("  of which in psycopg2 (send each statement, read its rows)", "django.db.backends.utils.CursorWrapper",
          "_execute")  # fmt: skip


class Meter:
    """CPU per label, from timed wrappers; a label already running on the stack is not re-counted."""

    def __init__(self) -> None:
        self.cpu: Counter = Counter()
        self.active: set[str] = set()
        self.restore: list[tuple[object, str, object]] = []

    def wrap(self, label: str, path: str, attr: str) -> None:
        try:
            owner = importlib.import_module(path)
        except ImportError:
            module, _, cls = path.rpartition(".")
            owner = getattr(importlib.import_module(module), cls)
        original = owner.__dict__.get(attr) if isinstance(owner, type) else None
        original = original or getattr(owner, attr, None)
        if original is None:  # not in this version of the code: nothing to time
            return
        meter = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if label in meter.active:
                return original(*args, **kwargs)
            meter.active.add(label)
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                meter.cpu[label] += time.thread_time() - started
                meter.active.discard(label)

        self.restore.append((owner, attr, original))
        setattr(owner, attr, timed)

    def unwrap(self) -> None:
        for owner, attr, original in reversed(self.restore):
            setattr(owner, attr, original)
        self.restore.clear()


def _profile(title: str, call, n: int, steps: list[tuple[str, str, str]]) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(10):  # warm-up
        call()
    with CaptureQueriesContext(connection) as queries:
        call()
    statements = sum(1 for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT"))
    commits = sum(1 for q in queries.captured_queries if q["sql"] == "COMMIT")
    meter = Meter()
    for step in [*steps, DRIVER]:
        meter.wrap(*step)
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        for _ in range(n):
            call()
    finally:
        meter.unwrap()
    cpu = (time.thread_time() - cpu) * 1000 / n
    wall = (time.perf_counter() - wall) * 1000 / n
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"#### {title}",
        "",
        f"{statements} SQL statements and {commits} commits per call; {n} calls one at a time: {cpu:.1f} ms of "
        f"CPU and {wall:.1f} ms of wall time per call; load average {load}.",
        "",
        "| step | CPU ms per call |",
        "|---|---:|",
    ]
    seen = set()
    for label, _, _ in [*steps, DRIVER]:
        if label not in seen:
            seen.add(label)
            lines.append(f"| {label} | {meter.cpu[label] * 1000 / n:.2f} |")
    return [*lines, ""]


def main(n: int) -> dict:
    import django

    django.setup()
    from django.test import Client

    from accounts.models import User
    from payments import red_packets, services

    out: list[str] = []
    rng = random.Random(7)
    ids = list(User.objects.filter(handle__startswith="pw").order_by("id").values_list("id", flat=True))
    if ids:

        def pair() -> tuple[int, int]:
            i = rng.randrange(len(ids))
            return ids[i], ids[(i + rng.randint(1, 5) * rng.choice((1, -1))) % len(ids)]

        def transfer() -> None:
            sender, receiver = pair()
            services.transfer_create(
                sender_id=sender, receiver_id=receiver, amount=rng.randint(1, 100), pin=PIN
            )

        out += _profile(
            f"`transfer_create` (auto-accept) between friends, {len(ids):,} wallets",
            transfer,
            n,
            TRANSFER_STEPS,
        )
        from django.conf import settings

        from accounts.models import LoginSession
        from accounts.tokens import issue_pair

        tokens = {}
        for uid in ids[:500]:
            session = LoginSession(user_id=uid, device_name="bench", expires_at=_far())
            tokens[uid] = issue_pair(session)["access"]
            session.save()
        client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
        senders = list(tokens)

        def request() -> None:
            i = ids.index(rng.choice(senders))
            receiver = ids[(i + rng.randint(1, 5) * rng.choice((1, -1))) % len(ids)]
            response = client.post(
                "/api/v1/payments/transfers",
                {"receiver_id": receiver, "amount": rng.randint(1, 100), "pin": PIN},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {tokens[ids[i]]}",
                HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
            )
            if response.status_code != 201:
                raise SystemExit(f"POST transfers answered {response.status_code}: {response.content[:300]}")

        out += _profile(
            "`POST /api/v1/payments/transfers` through Django in-process (middleware, DRF, JWT, "
            "Idempotency-Key, the service, rendering, the access log; no socket, gunicorn or nginx)",
            request,
            n,
            HTTP_STEPS,
        )
    else:
        out += ["(transfers: no 10,000-wallet shape in the database: run payments-transfers first)", ""]
    sender = User.objects.filter(handle__startswith="pgsend").values_list("id", flat=True).first()
    if sender is not None:
        from messaging.models import Conversation

        group = (
            Conversation.objects.filter(owner_id=sender, kind="group").values_list("id", flat=True).first()
        )
        grabbers = list(
            User.objects.filter(handle__regex=r"^pg[0-9]").order_by("id").values_list("id", flat=True)
        )
        grabs = min(n, 300)
        queue: list[tuple[int, int]] = []
        for _ in range(-(-(grabs + 11) // 100)):  # sent before the clock (each one tells 2,001 members)
            packet = red_packets.red_packet_send(sender_id=sender, kind="lucky", total_amount=1000, count=100,
                                                 conversation_id=group, pin=PIN)  # fmt: skip
            queue[:0] = [(packet.pk, g) for g in reversed(grabbers[:100])]

        def grab() -> None:
            packet_id, user_id = queue.pop()
            red_packets.red_packet_grab(user_id=user_id, packet_id=packet_id)

        out += _profile(
            f"a successful `red_packet_grab` (100-share packets in the {len(grabbers) + 1:,}-member group)",
            grab,
            grabs,
            GRAB_STEPS,
        )
    else:
        out += ["(grabs: no red-packet group in the database: run payments-grabs first)", ""]
    return {"markdown": "\n".join(out)}


def _far():
    from django.conf import settings
    from django.utils import timezone

    return timezone.now() + settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]


def _env() -> dict[str, str]:
    """The bench's environment; ``PROFILE_DATABASE_URL`` / ``PROFILE_REDIS_URL`` point it at a
    seeded copy of your own (so that a payments bench running meanwhile is left alone)."""
    extra = {"LOG_LEVEL": "INFO"}
    for name in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(f"PROFILE_{name}"):
            extra[name] = os.environ[f"PROFILE_{name}"]
    return django_env("b_pay_profile", **extra)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(main(int(sys.argv[2]))))
    else:
        # The access log at INFO as in production; its lines go to this child's stdout, dropped here.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.payments_profile",
                "--child",
                sys.argv[1] if len(sys.argv) > 1 else "300",
            ],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
        )
        results = [line for line in done.stdout.splitlines() if line.startswith('{"markdown"')]
        if done.returncode != 0 or not results:
            sys.exit(f"profiling failed:\n{done.stderr[-4000:]}")
        print(json.loads(results[-1])["markdown"])
