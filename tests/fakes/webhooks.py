"""A webhook receiver: a real HTTP(S) server on 127.0.0.1 that records what it is sent.

``with WebhookReceiver([500, "timeout", "close", 200]) as receiver: receiver.url`` answers the
n-th request with the n-th item of the script, then with ``default``:

* an int: that HTTP status (body ``{"received": true}``, or the error for 4xx/5xx);
* ``"timeout"``: says nothing for ``hang_seconds`` (past the client's timeout), then closes;
* ``"close"``: closes the connection without answering.

``tls=`` (from ``tests.fakes.tls.make_tls``) serves HTTPS with a certificate for localhost.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .tls import TlsFiles

Answer = int | str


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answer: Answer
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(
        self,
        script: list[Answer] | tuple[Answer, ...] = (),
        *,
        default: Answer = 200,
        delay: float = 0.0,
        hang_seconds: float = 5.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.script = list(script)
        self.default = default
        self.delay = delay  # seconds before every answer (concurrency tests)
        self.hang_seconds = hang_seconds
        self.tls = tls
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = "localhost" if self.tls else "127.0.0.1"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/hooks/superapp"

    @property
    def answers(self) -> list[Answer]:
        with self._lock:
            return [r.answer for r in self.requests]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def _next_answer(self, received: dict[str, Any]) -> Answer:
        with self._lock:
            index = len(self.requests)
            answer = self.script[index] if index < len(self.script) else self.default
            self.requests.append(Received(answer=answer, at=time.time(), **received))
            return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = receiver._next_answer(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                if receiver.delay:
                    receiver._stop.wait(receiver.delay)
                if answer == "timeout":
                    receiver._stop.wait(receiver.hang_seconds)
                    self.close_connection = True
                    return
                if answer == "close":
                    self.close_connection = True
                    return
                status = int(answer)
                payload = json.dumps(
                    {"received": True} if status < 400 else {"error": "scripted failure"}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
