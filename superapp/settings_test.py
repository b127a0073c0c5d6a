"""Test settings: the production shape on the local PostgreSQL and Redis, plus test speed-ups."""

import os
import uuid

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/superapp")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 20)
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_FORMAT", "console")
# The servers' path: their connections outlive a request (the pool, CONN_MAX_AGE), so they prepare
# the hot statements; tests run in one connection each and take the same path.
os.environ.setdefault("DB_PREPARED_STATEMENTS", "true")

from .settings import *  # noqa: F403
from .settings import CACHES, REST_FRAMEWORK

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tasks run in-process in most tests; tests about the worker start a real one.
CELERY_TASK_ALWAYS_EAGER = True
# Consumer unit tests use the in-memory layer; the cross-process tests run real servers on Redis.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Each run (and each xdist worker) gets its own cache namespace in the real Redis.
CACHES["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex[:8]}"
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {k: "10000/min" for k in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},
}
MEDIA_ROOT = VAR_DIR / "test-media"  # noqa: F405
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (whitenoise warns when missing)
# Test receivers listen on 127.0.0.1; production refuses private hosts (see docs/webhooks.md).
WEBHOOK_ALLOW_PRIVATE_HOSTS = True
