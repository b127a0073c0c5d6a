"""Payments II: merchant order create + pay + notify, end to end per second, against an anchor.

``python -m bench payments_orders``. Production topology (nginx -> gunicorn gthread, psycopg2
CONN_MAX_AGE=60) plus a real Celery worker delivering the merchant notifications to a local HTTP
receiver (this process). Each of 8 client threads (one customer each, one merchant for all)
runs whole flows back to back; a flow ends when its signed notification arrives:

* **dynamic QR**: the merchant's server creates an order (HMAC-signed ``POST /api/v1/pay/orders``),
  the customer's app pays it with the PIN (``POST .../checkout/orders/<code>/pay``, JWT,
  Idempotency-Key), the worker POSTs ``order.paid`` to the merchant;
* **payment code**: the app asks for a code (``POST .../payment-codes``), the merchant charges it
  under the no-PIN limit (signed ``POST /api/v1/pay/orders/micropay``), the worker notifies.

Anchor, same run, same client (8 Python threads, keep-alive): the bare Django view doing one
primary-key SELECT under gunicorn (``bench.anchors.pk_select_view``), in requests per second.
The PIN is checked with argon2 (production's hasher), which dominates the dynamic-QR flow.
Uses the bench database (``superapp_bench``, prepared by ``python -m bench``) and Redis db 3.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import servers
from .env import ROOT, server_env
from .stacks import PSYCOPG2_PERSISTENT, Anchor, gunicorn_label, gunicorn_production

THREADS = 8
PIN = "246810"
DRAIN_SECONDS = 60


# --- the merchant's notification receiver -------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 200 and notes when each order's notice arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                try:
                    data = json.loads(body)["data"]
                    with receiver.lock:
                        receiver.arrived.setdefault(data["out_trade_no"], now)
                except (ValueError, KeyError):
                    pass
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the client -----------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP connection (one per thread), JSON in and out."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> tuple[int, dict]:
        self.conn.request(
            method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = self.conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})


def _signed(key: dict, method: str, path: str, body: bytes) -> dict[str, str]:
    from payments.signing import authorization_header  # pure HMAC: no Django setup needed

    return {
        "Authorization": authorization_header(
            key_id=key["key_id"], secret=key["secret"], method=method, path=path, body=body
        )
    }


def _flow_dynamic(client: Client, key: dict, token: str, out_trade_no: str, amount: int) -> None:
    body = json.dumps({"out_trade_no": out_trade_no, "amount": amount, "description": "bench"}).encode()
    status, order = client.call(
        "POST", "/api/v1/pay/orders", body, _signed(key, "POST", "/api/v1/pay/orders", body)
    )
    if status != 201:
        raise RuntimeError(f"create: {status} {order}")
    code = order["code_url"].split("code=")[1]
    pay = json.dumps({"pin": PIN, "amount": amount}).encode()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": out_trade_no}
    status, paid = client.call("POST", f"/api/v1/payments/checkout/orders/{code}/pay", pay, headers)
    if status != 200 or paid.get("status") != "paid":
        raise RuntimeError(f"pay: {status} {paid}")


def _flow_code(client: Client, key: dict, token: str, out_trade_no: str, amount: int) -> None:
    status, issued = client.call(
        "POST", "/api/v1/payments/payment-codes", b"", {"Authorization": f"Bearer {token}"}
    )
    if status != 201:
        raise RuntimeError(f"payment code: {status} {issued}")
    body = json.dumps(
        {"out_trade_no": out_trade_no, "amount": amount, "auth_code": issued["code"], "description": "bench"}
    ).encode()
    path = "/api/v1/pay/orders/micropay"
    status, order = client.call("POST", path, body, _signed(key, "POST", path, body))
    if status != 201 or order.get("status") != "paid":
        raise RuntimeError(f"micropay: {status} {order}")


def _run_flows(base_url: str, setup: dict, receiver: Receiver, flow, seconds: float, tag: str) -> dict:
    started_at: dict[str, float] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        client = Client(base_url)
        n = 0
        try:
            while time.monotonic() < stop:
                out_trade_no = f"{tag}-{index}-{n}"
                n += 1
                t0 = time.monotonic()
                flow(client, setup["key"], setup["tokens"][index], out_trade_no, 100 + n % 900)
                with lock:
                    started_at[out_trade_no] = t0
        except BaseException as exc:  # reported below
            errors.append(exc)

    begin = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    api_seconds = time.monotonic() - begin
    if errors:
        raise errors[0]
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and not set(started_at) <= set(receiver.arrived):
        time.sleep(0.05)
    done = {k: receiver.arrived[k] for k in started_at if k in receiver.arrived}
    latencies = sorted((done[k] - started_at[k]) * 1000 for k in done)
    last = max(done.values(), default=begin)
    return {
        "flows": len(started_at),
        "notified": len(done),
        "per_second": len(done) / max(last - begin, 1e-9),
        "api_per_second": len(started_at) / api_seconds,
        "p50_ms": statistics.median(latencies) if latencies else 0.0,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
    }


def _anchor_rps(url: str, seconds: float) -> float:
    parts = urlsplit(url)
    counts = [0] * THREADS
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while time.monotonic() < stop:
            conn.request("GET", parts.path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"anchor answered {response.status}")
            counts[index] += 1

    begin = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - begin)


# --- the servers ----------------------------------------------------------------------------------


def _env(queue: str, **extra: str) -> dict[str, str]:
    return server_env(
        db=PSYCOPG2_PERSISTENT,
        app_name="b_pay_orders",
        CELERY_QUEUE=queue,
        WEBHOOK_ALLOW_PRIVATE_HOSTS="true",
        **extra,
    )


def _child(mode: str, env: dict[str, str], *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.payments_orders", "--child", mode, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"bench child {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _worker(env: dict[str, str], queue: str) -> subprocess.Popen:
    log = open(servers.RUN_DIR / "pay-orders-worker.log", "wb")  # noqa: SIM115 (lives as long as the worker)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "superapp", "worker", "-Q", queue, "--concurrency", "2",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def run(*, rounds: int = 3, seconds: float = 10.0) -> str:
    seconds = max(seconds, 10.0)  # a flow is slow (argon2): fewer seconds would count a handful
    queue = f"bench-pay-{uuid.uuid4().hex[:8]}"
    gunicorn_env = gunicorn_production()
    env = _env(queue, **gunicorn_env)
    receiver = Receiver()
    started: list = []
    worker = None
    results: dict[str, list] = {"anchor": [], "dynamic": [], "code": []}
    try:
        setup = _child("setup", env, receiver.url)
        app = servers.gunicorn("pay-orders-gunicorn", env, 2)
        started.append(app)
        anchor = Anchor("django")
        started.append(anchor)
        worker = _worker(env, queue)
        app.wait_ready()
        proxy = servers.nginx("pay-orders-nginx", app.port, app.port)
        started.append(proxy)
        proxy.wait_ready()
        anchor.ready()
        anchor_url = anchor.url + anchor.path.format(user_id=setup["anchor_user_id"])
        print(f"payments_orders: 3 targets, {rounds} rounds of {seconds:g}s", flush=True)
        _run_flows(proxy.url, setup, receiver, _flow_code, 2, "warm")  # warm-up: connections, caches
        for round_no in range(rounds):
            run_id = f"r{round_no}{uuid.uuid4().hex[:6]}"
            results["anchor"].append(_anchor_rps(anchor_url, seconds))
            results["dynamic"].append(
                _run_flows(proxy.url, setup, receiver, _flow_dynamic, seconds, f"q{run_id}")
            )
            results["code"].append(_run_flows(proxy.url, setup, receiver, _flow_code, seconds, f"c{run_id}"))
            print(f"  round {round_no + 1}/{rounds} done", flush=True)
        check = _child("reconcile", env)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        for item in reversed(started):
            item.stop()
        receiver.stop()

    def med(key: str, field: str | None = None) -> float:
        values = [r[field] for r in results[key]] if field else results[key]
        return statistics.median(values)

    anchor_rps = med("anchor")

    def ratio(key: str) -> float:
        return statistics.median(
            r["per_second"] / a for r, a in zip(results[key], results["anchor"], strict=True)
        )

    lost = sum(r["flows"] - r["notified"] for key in ("dynamic", "code") for r in results[key])
    lines = [
        "### Payments II: order create + pay + notify (`bench/payments_orders.py`)",
        "",
        f"nginx -> {gunicorn_label(gunicorn_env)}, psycopg2 CONN_MAX_AGE=60; Celery worker x2 (prefork) "
        f"delivering notifications to a local receiver; {THREADS} client threads (one customer each, "
        f"one merchant), {seconds:g}s per measurement, median of {rounds} interleaved rounds. A flow "
        f"counts when its signed notification has arrived; notifications missing after "
        f"{DRAIN_SECONDS}s: {lost}; reconciliation after the run: {'ok' if check['ok'] else 'MISMATCH'}.",
        "",
        "| flow | flows/s (notified) | API calls done/s | p50 ms | p99 ms | vs the anchor |",
        "|---|---:|---:|---:|---:|---:|",
        f"| anchor: Django view, 1 pk SELECT, gunicorn x2 (same client, req/s) | {anchor_rps:,.0f} | | | | 1.00 |",
        f"| dynamic QR: create (signed) + pay (PIN, argon2) + notify | {med('dynamic', 'per_second'):,.1f} | "
        f"{med('dynamic', 'api_per_second'):,.1f} | {med('dynamic', 'p50_ms'):,.0f} | "
        f"{med('dynamic', 'p99_ms'):,.0f} | {ratio('dynamic'):.3f} |",
        f"| payment code: code + micropay (signed, no PIN) + notify | {med('code', 'per_second'):,.1f} | "
        f"{med('code', 'api_per_second'):,.1f} | {med('code', 'p50_ms'):,.0f} | {med('code', 'p99_ms'):,.0f} | "
        f"{ratio('code'):.3f} |",
        "",
        f"Raw: {json.dumps(results)}",
    ]
    return "\n".join(lines)


# --- the child process (Django): setup and the final check ---------------------------------------


def child(mode: str, *args: str) -> dict:
    import django

    django.setup()
    from accounts import services as account_services
    from accounts.models import User
    from payments import merchants, services
    from payments.ledger import ledger_reconcile
    from payments.models import AccountKind, LedgerAccount, TopUp, WalletSettings

    if mode == "setup":
        notify_url = args[0]
        tag = uuid.uuid4().hex[:6]
        owner = User.objects.create_user(
            f"pbo_{tag}", "pw-bench", email=f"owner-{tag}@b.test", display_name="o", is_verified=True
        )
        issued = merchants.merchant_create(owner_id=owner.pk, name="Bench Shop", notify_url=notify_url)
        tokens = []
        for i in range(THREADS):
            payer = User.objects.create_user(
                f"pbp_{tag}_{i}", "pw-bench", email=f"p{i}-{tag}@b.test", display_name="p", is_verified=True
            )
            services.pin_set(user_id=payer.pk, pin=PIN)
            WalletSettings.objects.filter(user=payer).update(verification_level="verified")
            top_up = TopUp.objects.create(user=payer, amount=10**9, currency="CNY", provider="sandbox")
            services.top_up_settle(top_up_id=top_up.pk)
            tokens.append(account_services.session_create(user=payer, device_name="bench").tokens["access"])
        return {
            "key": {"key_id": issued.key.key_id, "secret": issued.secret},
            "tokens": tokens,
            "anchor_user_id": owner.pk,
        }
    if mode == "reconcile":
        negative = LedgerAccount.objects.filter(kind=AccountKind.WALLET, balance__lt=0).exists()
        return {"ok": ledger_reconcile().ok and not negative}
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], *sys.argv[3:])))
    else:
        print(run(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 3))
