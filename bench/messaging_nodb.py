"""The ASGI app for the messaging benchmark's decomposition row: ``message.send`` answered
without the database (``bench/messaging_chat.py``, "the socket side alone").

Everything else is the production app (``superapp.asgi:application``): the consumer, its thread
hop into the executor, the Pub/Sub channel layer and the frames. The handler builds the message
the real one would, and pushes a ``message.new`` envelope to both members of the chat through
``superapp.core.events.push_envelopes`` (the same single doorbell per commit), with cursors of
its own that are consecutive per user, so that the receiving sockets still check them. What is
left out is exactly ``messaging.services.message_send``: the checks, the statements, the commit,
the push scheduling. Used by the benchmark only; never served.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from typing import Any

from superapp.asgi import application  # noqa: F401  (the app uvicorn serves)
from superapp.core import realtime
from superapp.core.events import push_envelopes

# {conversation_id: (sender id, receiver id)}, from the seed the benchmark wrote.
with open(os.environ["MSG_BENCH_SEED"], encoding="utf-8") as seed_file:
    _MEMBERS = {
        p["conversation_id"]: (p["sender"]["id"], p["receiver"]["id"]) for p in json.load(seed_file)["pairs"]
    }
_ids = itertools.count(1)
_cursors: dict[int, int] = {}
_lock = threading.Lock()


def send_without_database(*, user_id: int, session_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    conversation_id = frame["conversation_id"]
    number = next(_ids)
    message = {
        "id": number, "conversation_id": conversation_id, "seq": number, "sender_id": user_id,
        "client_msg_id": frame["client_msg_id"], "kind": frame["kind"], "text": frame.get("text", ""),
        "content": {}, "reply_to": None, "mentions": [], "mention_all": False, "forwarded": False,
        "created_at": "2026-01-01T00:00:00Z", "recalled": False, "recalled_at": None, "recalled_by": None,
    }  # fmt: skip
    envelopes = []
    with _lock:  # cursors consecutive per user, as the stream heads give them
        for uid in _MEMBERS[conversation_id]:
            cursor = _cursors[uid] = _cursors.get(uid, 10**12) + 1
            envelopes.append((uid, {"type": "message.new", "cursor": cursor, "data": message}))
    push_envelopes(envelopes)
    return {"type": "message.send.result", "message": message, "created": True}


realtime._handlers["message.send"] = send_without_database
# (The benchmark also runs this server with REALTIME_FRAME_BATCHING=false: each frame reaches
# this handler on its own, as the production app's frames reached theirs before batching.)
realtime._batch_handlers.pop("message.send", None)
