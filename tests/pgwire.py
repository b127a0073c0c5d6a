"""A TCP proxy in front of the test PostgreSQL that counts round trips: the ``ReadyForQuery``
messages the server sends (one per simple query, per extended-protocol ``Sync``, so one per
statement outside a pipeline and one per psycopg 3 pipeline). Messages are read off the wire as
PostgreSQL frames them (a type byte, then a 4-byte length that counts itself); connect with
``sslmode=disable`` and ``gssencmode=disable`` so that no encryption handshake comes first.

    with RoundTrips() as trips, trips.django_connection():
        ...                      # the default connection now goes through the proxy
        trips.reset(); do_something(); assert trips.count == 3
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from django.db import connection


class RoundTrips:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = (host, port or int(connection.settings_dict.get("PORT") or 5432))
        self.count = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._threads: list[threading.Thread] = []

    def reset(self) -> None:
        with self._lock:
            self.count = 0

    def __enter__(self) -> RoundTrips:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self._sockets:
            # shutdown first: a close alone leaves a socket that a thread is reading open (the
            # read goes on), and PostgreSQL would keep the session to the end of the test run.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            for target, args in ((self._pump, (client, server)), (self._count_replies, (server, client))):
                thread = threading.Thread(target=target, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _count_replies(self, source: socket.socket, sink: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                buffer += data
                while len(buffer) >= 5:
                    kind, length = buffer[:1], struct.unpack("!I", buffer[1:5])[0]
                    if len(buffer) < 1 + length:
                        break
                    buffer = buffer[1 + length :]
                    if kind == b"Z":
                        with self._lock:
                            self.count += 1
                sink.sendall(data)  # counted first: the client never sees an answer not yet counted
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    @contextlib.contextmanager
    def django_connection(self) -> Iterator[None]:
        """Django's default connection goes through this proxy inside the block (it is closed on
        the way in and out; use it in a ``transactional_db`` test)."""
        saved = dict(connection.settings_dict)
        options = dict(saved.get("OPTIONS") or {})
        options.update(sslmode="disable", gssencmode="disable")
        connection.close()
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(self.port), OPTIONS=options)
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)
