"""ASGI entry point: the /ws/ WebSocket, and HTTP too when one server serves everything."""

import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "superapp.settings")

# Python's cyclic collector runs a young collection every 700 container allocations by default.
# A socket server allocates fast (a 500-member group message is ~500 frames and queue entries),
# so short-lived objects survive into the old generation and full collections of a heap holding
# hundreds of sockets (110-190 ms each, measured with gc.callbacks) stall every socket of the
# process. A larger first threshold lets them die young: in bench/messaging_chat.py the
# 500-member p99 went from 200 to 67 ms and the server CPU per group message from 44 to 31 ms.
# ASGI_GC_THRESHOLD0=700 restores Python's default.
gc.set_threshold(int(os.environ.get("ASGI_GC_THRESHOLD0") or 50_000), *gc.get_threshold()[1:])

# The event loop thread and the worker threads that run frames' database work share one GIL. A
# thread whose PostgreSQL answer has arrived waits for the running one to give the GIL up, by
# default after 5 ms: a batch of sends makes a few round trips, and under load each of them
# waited up to that long behind the busy loop. At 0.5 ms, bench/messaging_chat.py's 16 senders
# went from 602-677 to 743-757 msg/s (same run, same code). ASGI_SWITCH_INTERVAL_MS=5 restores
# Python's default.
_switch_ms = float(os.environ.get("ASGI_SWITCH_INTERVAL_MS") or 0.5)
if _switch_ms > 0:  # (0 or less: Python's own, as it refuses them)
    sys.setswitchinterval(_switch_ms / 1000)

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from superapp.core.consumers import EventConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # No Origin check: sockets authenticate with a token, never with a cookie, so a
        # foreign page cannot ride a user's credentials (and native apps send no Origin).
        "websocket": URLRouter([path("ws/", EventConsumer.as_asgi())]),
    }
)
