"""``manage.py serve``: one uvicorn process serving HTTP and /ws/ (what `make run` uses)."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket with uvicorn on one port (PORT, default 8000)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host: str, port: int, **options):
        import uvicorn

        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        mode = (
            "embedded default (SQLite, in-memory channel layer, eager tasks)"
            if settings.EMBEDDED
            else "production"
        )
        self.stdout.write(
            f"\nsuperapp ({mode})\n"
            f"  URL:      http://{shown}:{port}/\n"
            f"  API docs: http://{shown}:{port}/api/docs/\n"
            f"  Events:   ws://{shown}:{port}/ws/\n"
            f"  Health:   http://{shown}:{port}/healthz\n",
        )
        uvicorn.run(
            "superapp.asgi:application",
            host=host,
            port=port,
            access_log=False,  # our middleware logs each request once, without the query string
            log_config=None,  # Django's LOGGING applies
            ws_max_size=64 * 1024,
            lifespan="off",
        )
