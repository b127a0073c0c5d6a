"""ASGI entry point: the /ws/ WebSocket, and HTTP too when one server serves everything."""

import gc
import os

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
