"""ASGI entry point: the /ws/ WebSocket, and HTTP too when one server serves everything."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "superapp.settings")

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
