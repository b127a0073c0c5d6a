"""superapp: Django project package (settings, urls, ASGI/WSGI entry points, Celery app)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
