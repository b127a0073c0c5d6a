"""A WebSocket handshake through a stack's front door, authenticated by subprotocol."""

from __future__ import annotations

import json

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def websocket_handshake(base_url: str, token: str) -> bool:
    uri = base_url.replace("http://", "ws://") + "/ws/"
    try:
        with connect(uri, subprotocols=["superapp.v1", f"superapp.auth.{token}"], open_timeout=10) as ws:
            if ws.subprotocol != "superapp.v1":
                return False
            try:
                frame = json.loads(ws.recv(timeout=0.5))
            except TimeoutError:
                return True  # accepted and quiet: authenticated
            return frame.get("type") != "error"
    except (OSError, ConnectionClosed, TimeoutError):
        return False
