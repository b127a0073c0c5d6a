"""Settings, read from the environment (12-factor).

Two shapes:

* **Embedded default** (nothing set): SQLite file, in-memory channel layer, Celery tasks run
  eagerly in-process, local-memory cache, media on local disk, emails and SMS printed to the
  console. For `make run` and for trying the project out; one process only.
* **Production** (``DATABASE_URL`` or ``REDIS_URL`` set): PostgreSQL, the Redis channel layer,
  Redis cache, Celery on Redis; ``SECRET_KEY`` is required and ``DEBUG`` stays off unless asked.

Every knob is an environment variable; see ``docs/ARCHITECTURE.md`` for the list.
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# A .env file next to manage.py is read when present (never required).
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DATABASE_URL = env.str("DATABASE_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED = not DATABASE_URL and not REDIS_URL
VAR_DIR = Path(env.str("SUPERAPP_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)

if EMBEDDED:
    # The embedded default keeps a random key in var/ so that tokens survive restarts.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = env.str("SECRET_KEY", default=_key_file.read_text().strip())
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DATABASE_URL or REDIS_URL is set (production settings)."
        )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if EMBEDDED else ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "django_prometheus",
    "superapp.core",
    "accounts",
    "messaging",
    "moments",
    "payments",
    "miniprograms",
    "official_accounts",
    "govservices",
    "superapp.demo",  # seed_demo: the demo world of `make run`, through every app's services
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "superapp.core.middleware.RequestLogMiddleware",
    "superapp.core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "superapp.urls"
WSGI_APPLICATION = "superapp.wsgi.application"
ASGI_APPLICATION = "superapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# Measured in bench/ (BENCHMARKS.md, "topology"): REST is served by gunicorn (WSGI), where
# psycopg2 with persistent connections (CONN_MAX_AGE=60) costs the least per request; psycopg 3
# costs more CPU per query, with or without Django's pool, and connecting for every request
# (CONN_MAX_AGE=0) serves less than half as many. Under ASGI persistent connections leak: each request runs
# in its own thread context, so its connection is never reused and stays open until
# garbage-collected. Hence the defaults depend on the server interface of this process,
# recognised by the entry module being imported when the settings load:
#   wsgi  (superapp.wsgi: gunicorn)            psycopg2, CONN_MAX_AGE=60
#   asgi  (superapp.asgi: uvicorn; or `manage.py serve`)
#                                              psycopg 3 with Django's pool; CONN_MAX_AGE>0 refused
#   other (Celery, commands, tests)            psycopg2, CONN_MAX_AGE=0 (docker-compose gives the
#                                              Celery worker CONN_MAX_AGE=60: prefork is synchronous)
# DB_DRIVER: "psycopg2" or "psycopg" (psycopg 3). Django prefers psycopg 3 whenever it can import
# it, so choosing psycopg2 hides psycopg 3 from it. DB_POOL (psycopg 3 only): Django's pool.
# DB_HEALTH_CHECKS: check a reused connection (or, with the pool, a lent one) before its first
# query in a request, so that a database restart fails no request (one round trip each; with the
# pool, only when the connection's socket shows the server closed it: superapp/core/dbpool.py).
if "superapp.asgi" in sys.modules or sys.argv[1:2] == ["serve"]:
    SERVER_INTERFACE = "asgi"
elif "superapp.wsgi" in sys.modules:
    SERVER_INTERFACE = "wsgi"
else:
    SERVER_INTERFACE = ""
DB_DRIVER = env.str("DB_DRIVER", default="psycopg" if SERVER_INTERFACE == "asgi" else "psycopg2")
if DB_DRIVER == "psycopg2":
    sys.modules.setdefault("psycopg", None)  # type: ignore[arg-type]
elif DB_DRIVER != "psycopg":
    raise ImproperlyConfigured("DB_DRIVER must be 'psycopg2' or 'psycopg'.")

if DATABASE_URL:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    DB_POOL = env.bool("DB_POOL", default=SERVER_INTERFACE == "asgi" and DB_DRIVER == "psycopg")
    if DB_POOL and DB_DRIVER != "psycopg":
        raise ImproperlyConfigured("DB_POOL needs DB_DRIVER=psycopg (Django pools psycopg 3 only).")
    _conn_max_age = env.int("CONN_MAX_AGE", default=60 if SERVER_INTERFACE == "wsgi" and not DB_POOL else 0)
    if SERVER_INTERFACE == "asgi" and _conn_max_age:
        raise ImproperlyConfigured(
            "CONN_MAX_AGE must be 0 under ASGI (persistent connections leak there); use DB_POOL=1."
        )
    if DB_POOL and _conn_max_age:
        raise ImproperlyConfigured("DB_POOL and CONN_MAX_AGE exclude each other; set CONN_MAX_AGE=0.")
    DATABASES["default"]["CONN_MAX_AGE"] = _conn_max_age
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_HEALTH_CHECKS", default=True)
    DB_HEALTH_CHECK_IDLE_SECONDS = env.float("DB_HEALTH_CHECK_IDLE_SECONDS", default=30.0)
    # A request never waits on the database for longer than this (ms; 0 = no limit): a runaway
    # query is cancelled instead of holding a worker thread and its locks. Server processes only;
    # Celery and commands (reconciliation, fan-out, migrations) run without a limit by default.
    DB_STATEMENT_TIMEOUT = env.int("DB_STATEMENT_TIMEOUT", default=30_000 if SERVER_INTERFACE else 0)
    # The hot statements are prepared once per connection (superapp/core/prepared.py): by default
    # where connections outlive a request (the pool, CONN_MAX_AGE > 0). Off behind a pooler that
    # does not keep a client on one server connection (PgBouncer in transaction mode).
    DB_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", default=bool(DB_POOL or _conn_max_age))
    # Options given in DATABASE_URL (?options=-c ...) are kept; ours are added after them.
    _pg_options = [DATABASES["default"].get("OPTIONS", {}).get("options", "")]
    if DB_STATEMENT_TIMEOUT:
        _pg_options.append(f"-c statement_timeout={DB_STATEMENT_TIMEOUT}")
    if DB_PREPARED_STATEMENTS and DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Only those statements are prepared (Django binds parameters client-side), and each is
        # written so that one plan suits every value: a generic plan from the first EXECUTE on.
        # Left to choose, PostgreSQL keeps re-planning the event publish for a 2-member chat
        # (0.58 -> 0.32 ms a call: docs/ARCHITECTURE.md "Prepared statements").
        _pg_options.append("-c plan_cache_mode=force_generic_plan")
    if any(_pg_options):
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = " ".join(o for o in _pg_options if o)
    if DB_POOL:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN", default=2),
            "max_size": env.int("DB_POOL_MAX", default=20),
            "timeout": env.int("DB_POOL_TIMEOUT", default=10),
        }
        # Django's backend, whose pool's health check looks at the socket first and runs the
        # empty query only when the server closed it or said something, or when the connection
        # was not lent for DB_HEALTH_CHECK_IDLE_SECONDS (superapp/core/dbpool.py): a busy
        # server's lends cost no round trip, and a restarted database still fails no request.
        DATABASES["default"]["ENGINE"] = "superapp.core.postgresql"
else:
    DB_PREPARED_STATEMENTS = False
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "superapp.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, Celery ----------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="superapp"),
        }
    }
    # The channel layer only rings doorbells (events are stored first; devices sync), so at-most-
    # once delivery is fine and speed decides. CHANNEL_LAYER_BACKEND=pubsub (the default):
    # channels-redis' Pub/Sub layer, a group send is one PUBLISH pushed to the server process,
    # extended by superapp.core.layers so that one commit's doorbell to any number of users is
    # one PUBLISH of the whole batch (a 500-member group message was 499 of them);
    # "redis": the list-based layer, which pops one BZPOPMIN at a time per process. Measured in
    # bench/messaging_chat.py: Pub/Sub is faster at every figure (500-member fan-out p99 708 ms
    # against 1,712 ms). Both: a 30 s read timeout, because redis-py 8 reads with 5 s while the
    # layer blocks up to 5 s for the next message, and a read that times out first kills the
    # consumer and drops the socket.
    _channels_host = {"address": env.str("CHANNELS_REDIS_URL", default=REDIS_URL), "socket_timeout": 30}
    # Pub/Sub channels ignore Redis' database number: deployments (or test and benchmark runs)
    # sharing one Redis on different databases would ring each other's sockets (user ids
    # overlap). The default prefix therefore names the database; CHANNELS_PREFIX overrides it.
    _channels_db = urlsplit(_channels_host["address"]).path.strip("/") or "0"
    _channels_prefix = env.str(
        "CHANNELS_PREFIX", default="superapp" if _channels_db == "0" else f"superapp.db{_channels_db}"
    )
    CHANNEL_LAYER_BACKEND = env.str("CHANNEL_LAYER_BACKEND", default="pubsub")
    if CHANNEL_LAYER_BACKEND == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "superapp.core.layers.BatchPubSubChannelLayer",
                "CONFIG": {"hosts": [_channels_host], "prefix": _channels_prefix},
            }
        }
    elif CHANNEL_LAYER_BACKEND == "redis":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    # redis-py 8's asyncio pool allows 100 connections, then fails at once: 500
                    # sockets connecting, or a fan-out to 500 users, need more.
                    "hosts": [
                        {
                            **_channels_host,
                            "max_connections": env.int("CHANNELS_REDIS_MAX_CONNECTIONS", default=1000),
                        }
                    ],
                    "prefix": _channels_prefix,
                    "capacity": env.int("CHANNELS_CAPACITY", default=1000),
                    "expiry": 60,
                },
            }
        }
    else:
        raise ImproperlyConfigured("CHANNEL_LAYER_BACKEND must be 'pubsub' or 'redis'.")
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True

CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE = {
    "purge-old-events": {"task": "core.purge_old_events", "schedule": 3600.0},
    "purge-expired-verification-codes": {
        "task": "accounts.purge_expired_verification_codes",
        "schedule": 3600.0,
    },
}

# --- Auth ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.LoginBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login lockout (django-axes): 5 failures for one account locks its logins for 15 minutes.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_USERNAME_FORM_FIELD = "login"
AXES_USERNAME_CALLABLE = "accounts.backends.axes_username"
AXES_LOCKOUT_CALLABLE = "accounts.backends.axes_lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = env.int("PROXY_COUNT", default=0)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("ACCESS_TOKEN_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("REFRESH_TOKEN_DAYS", default=30)),
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "ALGORITHM": "HS256",
    "USER_ID_CLAIM": "user_id",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

VERIFICATION_SENDER = env.str("VERIFICATION_SENDER", default="accounts.senders.ConsoleSender")
VERIFICATION_CODE_TTL = timedelta(minutes=10)
HANDLE_CHANGE_INTERVAL = timedelta(days=365)
WS_TICKET_TTL_SECONDS = 60
FRIEND_QR_TTL = timedelta(days=7)

# --- REST framework, OpenAPI ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.SessionJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "superapp.core.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "superapp.core.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "auth": env.str("THROTTLE_AUTH", default="20/min"),
        "register": env.str("THROTTLE_REGISTER", default="10/hour"),
        "verify": env.str("THROTTLE_VERIFY", default="20/hour"),
        "contact_search": env.str("THROTTLE_CONTACT_SEARCH", default="60/hour"),
        # Per user: starting (or resuming) a real-name verification (payments/api/verification_views.py).
        "identity_verification": env.str("THROTTLE_IDENTITY_VERIFICATION", default="5/day"),
        # Per merchant on the server-to-server orders API (payments/api/merchant_auth.py).
        "merchant_api": env.str("THROTTLE_MERCHANT_API", default="1200/min"),
    },
    "NUM_PROXIES": env.int("PROXY_COUNT", default=0) or None,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "superapp API",
    "DESCRIPTION": "REST API of superapp. Realtime events arrive over the /ws/ WebSocket.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {},
}

# --- Internationalisation ------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese")), ("ru", _("Russian"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

# --- Static and media ----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = env.str("MEDIA_URL", default="/media/")
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=EMBEDDED)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not EMBEDDED
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}


# Media on S3-compatible object storage (AWS S3, MinIO, Ceph, R2...) when a bucket is named;
# the local disk otherwise. Objects are public-read by URL, like Mastodon's media: every key has
# a random component, and stored events carry media URLs, so they must not expire (a presigned
# URL in an event replayed by `sync` a day later would be dead). Put a CDN in front with
# AWS_S3_CUSTOM_DOMAIN. file_overwrite stays off: two uploads never share a key.
def s3_media_storage() -> dict | None:
    """The default storage for an S3-compatible bucket named by ``AWS_STORAGE_BUCKET_NAME``."""
    bucket = env.str("AWS_STORAGE_BUCKET_NAME", default="")
    if not bucket:
        return None
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "custom_domain": env.str("AWS_S3_CUSTOM_DOMAIN", default="") or None,
            "location": env.str("AWS_LOCATION", default=""),
            "addressing_style": env.str("AWS_S3_ADDRESSING_STYLE", default="") or None,
            "default_acl": env.str("AWS_DEFAULT_ACL", default="") or None,
            "querystring_auth": False,
            "file_overwrite": False,
        },
    }


STORAGES["default"] = s3_media_storage() or STORAGES["default"]
WHITENOISE_USE_FINDERS = EMBEDDED
if EMBEDDED:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
AVATAR_MAX_BYTES = 10 * 1024 * 1024
AVATAR_MAX_PIXELS = 40_000_000
AVATAR_SIZES = (640, 132)

# --- Email and outbound messages -------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="superapp <no-reply@localhost>")

# --- Events ---------------------------------------------------------------------------------
EVENT_RETENTION_DAYS = env.int("EVENT_RETENTION_DAYS", default=30)
SYNC_PAGE_MAX = 500

# --- Security --------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not EMBEDDED and not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = not EMBEDDED
CSRF_COOKIE_SECURE = not EMBEDDED
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if EMBEDDED else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not EMBEDDED
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not EMBEDDED)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if EMBEDDED else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "superapp.core.logging.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "superapp.core.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # One line per request comes from our middleware; Django's own would repeat it.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # uvicorn logs socket paths with their query string (which may hold a ticket).
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
    },
}

# --- Metrics ---------------------------------------------------------------------------------
PROMETHEUS_EXPORT_MIGRATIONS = False
# When set, /metrics answers only "Authorization: Bearer <METRICS_TOKEN>" (Prometheus' authorization).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
WS_AUTHENTICATOR = "accounts.realtime.authenticate_socket"
# Frames of a type with a batch handler (message.send) that the process's sockets send while a
# batch runs are handled together in the next one, up to REALTIME_FRAME_BATCH_MAX frames: one
# worker-thread trip, one transaction, one publish (superapp/core/consumers.py FrameBatcher).
REALTIME_FRAME_BATCHING = env.bool("REALTIME_FRAME_BATCHING", default=True)
REALTIME_FRAME_BATCH_MAX = env.int("REALTIME_FRAME_BATCH_MAX", default=64)
# Batches of one process in flight at once. One: the next batch lingers for every recent sender,
# so 16 senders share full batches (1,058-1,098 msg/s with 1, 1,019-1,082 with 2, where a batch
# in flight keeps its senders out of the next one and groups can persist; before the linger
# waited for recent senders, 2 had measured best: 774-876 against 680-740 with 1).
REALTIME_FRAME_BATCH_CONCURRENCY = env.int("REALTIME_FRAME_BATCH_CONCURRENCY", default=1)
# A batch still running after this long (a lock wait, a slow statement) no longer holds up the
# frames that came meanwhile: they get a batch of their own beside it (ms).
REALTIME_FRAME_BATCH_STALL_MS = env.float("REALTIME_FRAME_BATCH_STALL_MS", default=100.0)
# Under load (a batch just ran), how long the next batch may wait for the last one's sockets to
# send again before it starts with fewer frames (ms; 0: never waits). An idle socket never waits.
REALTIME_FRAME_BATCH_LINGER_MS = env.float("REALTIME_FRAME_BATCH_LINGER_MS", default=2.0)
# How long a socket holds back a stored event's frame whose cursor jumps ahead, waiting for the
# frames before it (another process's doorbell may come later than this process's own): ms; 0 =
# send at once (superapp/core/consumers.py, EventConsumer.event_push).
REALTIME_REORDER_HOLD_MS = env.float("REALTIME_REORDER_HOLD_MS", default=20.0)
# axes.W006 wants lockout per IP too. Locking an IP would lock out every user behind one carrier
# NAT; per-IP abuse is limited by the "auth" throttle instead, per account by axes.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

# --- Moments (see docs/moments.md) -------------------------------------------------------------
MOMENTS_TEXT_MAX = 2000
MOMENTS_COMMENT_MAX = 500
MOMENTS_IMAGES_MAX = 9
MOMENTS_IMAGE_MAX_BYTES = 10 * 1024 * 1024
MOMENTS_IMAGE_MAX_PIXELS = 40_000_000
MOMENTS_IMAGE_SIZES = (1440, 360)  # full, thumbnail (longest side, px)
MOMENTS_VIDEO_MAX_BYTES = env.int("MOMENTS_VIDEO_MAX_BYTES", default=18 * 1024 * 1024)  # < MAX_REQUEST_BYTES
MOMENTS_ORPHAN_MEDIA_HOURS = 24
MOMENTS_LIKES_SHOWN = 100  # likes (of the viewer's friends) rendered with a post
MOMENTS_COMMENTS_SHOWN = 20  # comments rendered with a post in a feed; the rest via its comment list
# Up to this many readers a post is written into the timelines in the publishing transaction;
# beyond, by the Celery task moments.fan_out_post after commit.
MOMENTS_FANOUT_INLINE_MAX = env.int("MOMENTS_FANOUT_INLINE_MAX", default=1000)
# The feed statement is prepared once per database connection (moments/feed.py), like the other
# hot statements (DB_PREPARED_STATEMENTS).
MOMENTS_FEED_PREPARED = env.bool("MOMENTS_FEED_PREPARED", default=DB_PREPARED_STATEMENTS)
# The home feed's first page is kept per viewer in Redis and served while every version it was
# built from is current (moments/feed_cache.py, docs/moments.md). MOMENTS_FEED_CACHE: serve from
# it (on with Redis); writers bump versions whenever MOMENTS_FEED_CACHE_URL is set.
MOMENTS_FEED_CACHE_URL = env.str("MOMENTS_FEED_CACHE_URL", default=REDIS_URL)
MOMENTS_FEED_CACHE = env.bool("MOMENTS_FEED_CACHE", default=bool(MOMENTS_FEED_CACHE_URL))
MOMENTS_FEED_CACHE_TTL = env.int("MOMENTS_FEED_CACHE_TTL", default=300)  # seconds, at most
# Every process of a deployment must share MOMENTS_FEED_CACHE_URL and this prefix (writers bump
# where readers look). Empty: CACHE_KEY_PREFIX plus a hash of the database's name and host.
MOMENTS_FEED_CACHE_PREFIX = env.str("MOMENTS_FEED_CACHE_PREFIX", default="")
CELERY_BEAT_SCHEDULE["moments-purge-orphan-media"] = {
    "task": "moments.purge_orphan_media",
    "schedule": 3600.0,
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "MomentsPostKindEnum": "moments.models.Post.Kind",
        "MomentsMediaKindEnum": "moments.models.Media.Kind",
        "MomentsNotificationKindEnum": "moments.models.Notification.Kind",
    }
)

# --- Push notifications (see docs/push.md) ---------------------------------------------------
# Which backend delivers to each platform: "console" (log only) for all, or e.g.
# "android=fcm,web=fcm,ios=apns" (aliases console, fcm, apns, none; or a dotted class path).
PUSH_BACKENDS = env.str("PUSH_BACKENDS", default="console")
FCM_SERVICE_ACCOUNT_FILE = env.str("FCM_SERVICE_ACCOUNT_FILE", default="")  # the service account's JSON key
FCM_PROJECT_ID = env.str("FCM_PROJECT_ID", default="")  # default: the key's project_id
FCM_BASE_URL = env.str("FCM_BASE_URL", default="https://fcm.googleapis.com")
APNS_KEY_FILE = env.str("APNS_KEY_FILE", default="")  # the .p8 signing key
APNS_KEY_ID = env.str("APNS_KEY_ID", default="")
APNS_TEAM_ID = env.str("APNS_TEAM_ID", default="")
APNS_TOPIC = env.str("APNS_TOPIC", default="")  # the app's bundle id, unless a device registered its own
APNS_USE_SANDBOX = env.bool("APNS_USE_SANDBOX", default=False)
APNS_BASE_URL = env.str("APNS_BASE_URL", default="")  # default: Apple's production or sandbox host
APNS_CA_FILE = env.str("APNS_CA_FILE", default="")  # default: the system's CA certificates
PUSH_HTTP_TIMEOUT = env.float("PUSH_HTTP_TIMEOUT", default=10.0)
PUSH_TTL_SECONDS = env.int("PUSH_TTL_SECONDS", default=24 * 3600)
PUSH_MAX_ATTEMPTS = env.int("PUSH_MAX_ATTEMPTS", default=5)
PUSH_RETRY_BACKOFF = env.float("PUSH_RETRY_BACKOFF", default=15.0)  # seconds, doubled per attempt
PUSH_RETRY_BACKOFF_MAX = env.float("PUSH_RETRY_BACKOFF_MAX", default=900.0)
PUSH_DEVICES_PER_USER_MAX = env.int("PUSH_DEVICES_PER_USER_MAX", default=20)
PUSH_DISABLED_RETENTION_DAYS = env.int("PUSH_DISABLED_RETENTION_DAYS", default=30)
CELERY_BEAT_SCHEDULE["push-purge-disabled-devices"] = {
    "task": "core.push_purge_disabled_devices",
    "schedule": 24 * 3600.0,
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["PushPlatformEnum"] = (
    "superapp.core.push.models.PushDevice.Platform"
)
# httpx logs every request URL at INFO, and an APNs URL holds the device token; hpack and h2
# log headers (the bearer tokens) at DEBUG.
LOGGING["loggers"].update({name: {"level": "WARNING"} for name in ("httpx", "httpcore", "hpack", "h2")})

# --- Messaging (see docs/messaging.md) ----------------------------------------------------------
MESSAGING_TEXT_MAX = 4000  # characters of a text message
MESSAGING_ANNOUNCEMENT_MAX = 2000
MESSAGING_GROUP_MAX_MEMBERS = 500
MESSAGING_RECALL_SECONDS = 120
MESSAGING_FORWARD_MAX = 30  # messages in one forward
MESSAGING_FORWARD_TARGETS_MAX = 9  # conversations in one forward
MESSAGING_TYPING_INTERVAL = 3  # seconds between two "typing" frames of one user in one conversation
MESSAGING_HISTORY_PAGE_MAX = 200
MESSAGING_IMAGE_MAX_BYTES = 10 * 1024 * 1024
MESSAGING_IMAGE_MAX_PIXELS = 40_000_000
MESSAGING_IMAGE_SIZES = (1920, 320)  # full, thumbnail (longest side, px)
MESSAGING_GROUP_AVATAR_SIZES = (640, 132)
MESSAGING_VIDEO_MAX_BYTES = env.int(
    "MESSAGING_VIDEO_MAX_BYTES", default=18 * 1024 * 1024
)  # < MAX_REQUEST_BYTES
MESSAGING_VIDEO_MAX_SECONDS = 300
MESSAGING_VOICE_MAX_BYTES = 2 * 1024 * 1024
MESSAGING_VOICE_MAX_SECONDS = 60
MESSAGING_FILE_MAX_BYTES = env.int("MESSAGING_FILE_MAX_BYTES", default=18 * 1024 * 1024)
MESSAGING_ORPHAN_MEDIA_HOURS = 24
MESSAGING_INVITE_LINK_TTL = timedelta(days=7)
# Presence lives in Redis (sorted set of open sockets per user), in memory without Redis.
MESSAGING_PRESENCE_REDIS_URL = env.str("MESSAGING_PRESENCE_REDIS_URL", default=REDIS_URL)
MESSAGING_PRESENCE_TTL = env.int("MESSAGING_PRESENCE_TTL", default=90)  # seconds; heartbeat every TTL/3
# Offline members get one push per window ("3 new messages"), through superapp.core.push.
MESSAGING_PUSH_ENABLED = env.bool("MESSAGING_PUSH_ENABLED", default=True)
# A batch of WebSocket sends waits at most this long for a lock another transaction holds (a
# conversation, a stream head, a read mark); then each of its sends goes on its own (ms).
MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS = env.int("MESSAGING_SEND_BATCH_LOCK_TIMEOUT_MS", default=200)
MESSAGING_PUSH_WINDOW = env.float("MESSAGING_PUSH_WINDOW", default=3.0)  # seconds
MESSAGING_PUSH_APP_NAME = env.str("MESSAGING_PUSH_APP_NAME", default="superapp")
CELERY_BEAT_SCHEDULE["messaging-purge-orphan-media"] = {
    "task": "messaging.purge_orphan_media",
    "schedule": 3600.0,
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "MessagingMessageKindEnum": "messaging.models.Message.Kind",
        "MessagingSendableKindEnum": "messaging.api.serializers.SENDABLE_CHOICES",
        "MessagingConversationKindEnum": "messaging.models.Conversation.Kind",
        "MessagingMediaKindEnum": "messaging.models.Attachment.Kind",
        "MessagingRoleEnum": "messaging.models.Member.Role",
        "MessagingManagedRoleEnum": "messaging.api.serializers.MANAGED_ROLES",
        "MessagingPresenceVisibilityEnum": "messaging.models.UserSettings.Visibility",
    }
)

# --- Payments (docs/payments.md) ---
PAYMENTS_DEFAULT_CURRENCY = env.str("PAYMENTS_DEFAULT_CURRENCY", default="CNY")
PAYMENTS_CURRENCIES = env.list("PAYMENTS_CURRENCIES", default=["CNY"])
# Limits in minor units, per verification level (unverified / real-name verified).
PAYMENTS_LIMITS = {
    "unverified": {
        "per_payment": env.int("PAYMENTS_UNVERIFIED_PER_PAYMENT", default=20_000),
        "per_day": env.int("PAYMENTS_UNVERIFIED_PER_DAY", default=50_000),
    },
    "verified": {
        "per_payment": env.int("PAYMENTS_VERIFIED_PER_PAYMENT", default=5_000_000),
        "per_day": env.int("PAYMENTS_VERIFIED_PER_DAY", default=20_000_000),
    },
}
PAYMENTS_TOP_UP_MAX = env.int("PAYMENTS_TOP_UP_MAX", default=5_000_000)
PAYMENTS_PIN_MAX_ATTEMPTS = 5
PAYMENTS_PIN_LOCK = timedelta(hours=3)
# Keys of the payment PIN hashes (payments/pins.py): the first hashes, all verify (rotation).
# Keep them apart from the database backups; empty: derived from SECRET_KEY (+ fallbacks).
PAYMENTS_PIN_KEYS = env.list("PAYMENTS_PIN_KEYS", default=[])
PAYMENTS_TRANSFER_TTL = timedelta(hours=24)
# Real-name verification (payments/verification.py). One identity (ID document) may verify this
# many accounts: 5, as WeChat Pay allows per resident ID card; 1 for one account per person.
PAYMENTS_IDENTITY_MAX_ACCOUNTS = env.int("PAYMENTS_IDENTITY_MAX_ACCOUNTS", default=5)
# Key of the ID number hashes: required in production (deploy check payments.W001), long, random,
# kept apart from the other settings and the backups: whoever holds it can find a resident ID
# number from its hash by trying them. Empty (development): derived from SECRET_KEY. Never change
# it (earlier hashes become unmatchable, so an identity could verify its accounts again).
PAYMENTS_IDENTITY_KEY = env.str("PAYMENTS_IDENTITY_KEY", default="")
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
PAYMENTS_PROVIDER = env.str("PAYMENTS_PROVIDER", default="stripe" if STRIPE_SECRET_KEY else "sandbox")
# A red packet holds at most 200 CNY, as WeChat's.
PAYMENTS_RED_PACKET_MAX_AMOUNT = env.int("PAYMENTS_RED_PACKET_MAX_AMOUNT", default=20_000)
PAYMENTS_RED_PACKET_MAX_COUNT = 100
PAYMENTS_RED_PACKET_TTL = timedelta(hours=24)
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "PaymentsEntryKindEnum": "payments.models.JournalEntry.Kind",
        "PaymentsTransferStatusEnum": "payments.models.Transfer.Status",
        "PaymentsRedPacketKindEnum": "payments.models.RedPacket.Kind",
        "PaymentsRedPacketStatusEnum": "payments.models.RedPacket.Status",
        "PaymentsWithdrawalStatusEnum": "payments.models.Withdrawal.Status",
        "PaymentsVerificationStatusEnum": "payments.models.IdentityVerification.Status",
        "PaymentsVerificationStateEnum": "payments.models_verification.VERIFICATION_STATES",
    }
)
CELERY_BEAT_SCHEDULE["payments-complete-stale-verifications"] = {
    "task": "payments.complete_stale_verifications",
    "schedule": 600.0,
}
CELERY_BEAT_SCHEDULE["payments-resubmit-stale-withdrawals"] = {
    "task": "payments.resubmit_stale_withdrawals",
    "schedule": 600.0,
}
CELERY_BEAT_SCHEDULE["payments-refund-expired-red-packets"] = {
    "task": "payments.refund_expired_red_packets",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["payments-reconcile-ledger"] = {"task": "payments.reconcile_ledger", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["payments-refund-expired-transfers"] = {
    "task": "payments.refund_expired_transfers",
    "schedule": 300.0,
}
CELERY_BEAT_SCHEDULE["payments-purge-idempotency-keys"] = {
    "task": "payments.purge_idempotency_keys",
    "schedule": 3600.0,
}

# --- Payments II: merchants, orders API, payment codes, settlement (docs/payments.md) ---------
PAYMENTS_MERCHANT_FEE_BPS = env.int("PAYMENTS_MERCHANT_FEE_BPS", default=60)  # 0.6 %, like WeChat Pay
# Fernet keys encrypting merchants' API secrets (first encrypts, all decrypt); empty: derived from SECRET_KEY.
PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS = env.list("PAYMENTS_MERCHANT_KEY_ENCRYPTION_KEYS", default=[])
PAYMENTS_MERCHANT_KEY_GRACE = timedelta(hours=env.int("PAYMENTS_MERCHANT_KEY_GRACE_HOURS", default=24))
PAYMENTS_SIGNATURE_WINDOW = env.int("PAYMENTS_SIGNATURE_WINDOW", default=300)  # seconds, either way
PAYMENTS_ORDER_TTL = timedelta(minutes=env.int("PAYMENTS_ORDER_TTL_MINUTES", default=120))
PAYMENTS_ORDER_MAX_TTL = timedelta(days=7)
PAYMENTS_PAYMENT_CODE_TTL = timedelta(seconds=env.int("PAYMENTS_PAYMENT_CODE_TTL", default=60))
# A payment code charges at once up to this amount (minor units); above, the payer confirms with the PIN.
PAYMENTS_MICROPAY_NO_PIN_LIMIT = env.int("PAYMENTS_MICROPAY_NO_PIN_LIMIT", default=10_000)
PAYMENTS_MICROPAY_CONFIRM_TTL = timedelta(minutes=2)
# The business day of settlement (T+1): payments of day D become withdrawable after midnight.
PAYMENTS_SETTLEMENT_TIMEZONE = env.str("PAYMENTS_SETTLEMENT_TIMEZONE", default="Asia/Shanghai")
PAYMENTS_PAY_URL = env.str("PAYMENTS_PAY_URL", default="superapp://pay")
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "PaymentsOrderStatusEnum": "payments.models_merchants.MerchantOrder.Status",
        "PaymentsTradeTypeEnum": "payments.models_merchants.MerchantOrder.TradeType",
        "PaymentsMerchantKindEnum": "payments.models_merchants.Merchant.Kind",
        "PaymentsMerchantStatusEnum": "payments.models_merchants.Merchant.Status",
        "PaymentsRefundSourceEnum": "payments.models_merchants.MerchantRefund.Source",
    }
)
# Hourly: each run settles every business day that has ended (once: a unique batch per day).
CELERY_BEAT_SCHEDULE["payments-settle-merchants"] = {"task": "payments.settle_merchants", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["payments-close-expired-orders"] = {
    "task": "payments.close_expired_orders",
    "schedule": 300.0,
}

# --- Outbound webhooks (superapp.core.webhooks, docs/webhooks.md) -----------------------------
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)  # seconds per connect/read/write
# Seconds to wait after failed attempt n (the last value repeats), WeChat Pay's notification
# schedule: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h; until WEBHOOK_MAX_AGE after
# the event, when one last attempt is made at that age.
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE",
    cast=float,
    default=[15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600],
)
WEBHOOK_MAX_AGE = env.float("WEBHOOK_MAX_AGE", default=24 * 3600.0)
if not WEBHOOK_RETRY_SCHEDULE or min(WEBHOOK_RETRY_SCHEDULE) <= 0 or WEBHOOK_MAX_AGE <= 0:
    raise ImproperlyConfigured("WEBHOOK_RETRY_SCHEDULE needs positive delays; WEBHOOK_MAX_AGE > 0.")
# Production refuses receivers on loopback/private/link-local addresses (SSRF into our network).
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=EMBEDDED)
WEBHOOK_CA_FILE = env.str("WEBHOOK_CA_FILE", default="")  # default: the system's CA certificates
CELERY_BEAT_SCHEDULE["core-webhooks-sweep"] = {"task": "core.webhooks_sweep", "schedule": 60.0}
# Finished deliveries (and their attempts) are deleted after this many days; pending ones never.
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=30)
CELERY_BEAT_SCHEDULE["core-purge-old-webhooks"] = {"task": "core.purge_old_webhooks", "schedule": 3600.0}
