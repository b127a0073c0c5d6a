"""WSGI entry point: REST, admin and docs under gunicorn (see docs/ARCHITECTURE.md)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "superapp.settings")

application = get_wsgi_application()
