"""Smoke test of `make run`: start it, wait for /healthz, log in as alice, open the WebSocket,
receive an event caused by bob, stop it. Exits non-zero on any failure."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import websockets

PORT = int(os.environ.get("SMOKE_PORT", "8765"))
BASE = f"http://127.0.0.1:{PORT}"
PASSWORD = os.environ.get("DEMO_PASSWORD", "superapp-demo")


def wait_healthy(proc: subprocess.Popen, deadline: float) -> None:
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"make run exited early with {proc.returncode}")
        try:
            if httpx.get(f"{BASE}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("make run did not become healthy in time")


def login(handle: str) -> str:
    response = httpx.post(
        f"{BASE}/api/v1/auth/login", json={"login": handle, "password": PASSWORD}, timeout=10
    )
    response.raise_for_status()
    return response.json()["access"]


async def scenario() -> None:
    alice = login("alice")
    bob = login("bob")
    uri = f"ws://127.0.0.1:{PORT}/ws/"
    async with websockets.connect(uri, subprotocols=["superapp.v1", f"superapp.auth.{alice}"]) as ws:
        assert ws.subprotocol == "superapp.v1", ws.subprotocol
        new_bio = f"smoke {time.time()}"
        async with httpx.AsyncClient(base_url=BASE, timeout=10) as client:
            r = await client.patch(
                "/api/v1/me", json={"bio": new_bio}, headers={"Authorization": f"Bearer {bob}"}
            )
            r.raise_for_status()
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            if frame.get("type") == "profile.updated" and frame["data"]["user"]["bio"] == new_bio:
                print(f"smoke: alice received {frame['type']} (cursor {frame['cursor']}) caused by bob")
                return


def main() -> int:
    var_dir = tempfile.mkdtemp(prefix="superapp-smoke-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORT=str(PORT), SUPERAPP_VAR_DIR=var_dir)
    proc = subprocess.Popen(["make", "run"], env=env, start_new_session=True)
    try:
        wait_healthy(proc, time.time() + 300)
        asyncio.run(scenario())
        print("smoke: make run OK")
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
