"""Serve an ASGI app with hypercorn on 127.0.0.1 (HTTP/1.1, or HTTP/2 over TLS) from a thread."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from .tls import TlsFiles

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ServerThread:
    """``with ServerThread(app, tls=files) as server: server.url``. The port is bound before start."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, tls: TlsFiles | None = None
    ):
        self.app = _with_lifespan(app)
        self.tls = tls
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._fd = sock.detach()  # hypercorn takes the socket over
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=f"fake-server-{self.port}", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        config = Config()
        config.bind = [f"fd://{self._fd}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tests.fakes")
        config.graceful_timeout = 0.2
        if self.tls:
            config.certfile = str(self.tls.cert_file)
            config.keyfile = str(self.tls.key_file)
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by __enter__/__exit__
            self._error = exc
            self._started.set()
        finally:
            self._loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._started.wait(10)
        if self._error:
            raise self._error
        # Listening once a TCP connection succeeds.
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                threading.Event().wait(0.05)
        raise RuntimeError("fake server did not start")

    def __exit__(self, *exc_info) -> None:
        if self._loop and self._stop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _with_lifespan(app):
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await app(scope, receive, send)

    return wrapped


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def headers_of(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def respond(send: Send, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    raw_headers = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if body is not None:
        raw_headers.append((b"content-type", b"application/json; charset=UTF-8"))
    raw_headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
