"""Which backend delivers to which platform (``PUSH_BACKENDS``), one instance per process.

``PUSH_BACKENDS`` is either a dict ``{platform: backend}`` or a string: ``"console"`` (every
platform) or ``"android=fcm,web=fcm,ios=apns"``. A backend is an alias (``console``, ``fcm``,
``apns``, ``none``) or the dotted path of a :class:`~.base.PushBackend` subclass. A platform
left out, or mapped to ``none``, is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .base import PushBackend

ALIASES = {
    "console": "superapp.core.push.backends.console.ConsoleBackend",
    "log": "superapp.core.push.backends.console.ConsoleBackend",
    "fcm": "superapp.core.push.backends.fcm.FcmV1Backend",
    "apns": "superapp.core.push.backends.apns.ApnsBackend",
}
PLATFORMS = ("android", "ios", "web")

_instances: dict[str, PushBackend] = {}
_lock = threading.Lock()


def parse_config(value: str | Mapping[str, str]) -> dict[str, str]:
    """``PUSH_BACKENDS`` as ``{platform: dotted path or "none"}`` for every platform."""
    if isinstance(value, str):
        value = value.strip()
        if "=" not in value:
            mapping = dict.fromkeys(PLATFORMS, value or "none")
        else:
            mapping = {}
            for part in value.split(","):
                platform, _, backend = part.partition("=")
                mapping[platform.strip()] = backend.strip()
    else:
        mapping = dict(value)
    unknown = set(mapping) - set(PLATFORMS)
    if unknown:
        raise ImproperlyConfigured(f"PUSH_BACKENDS names unknown platforms: {sorted(unknown)}")
    return {p: ALIASES.get(mapping.get(p, "none"), mapping.get(p, "none")) for p in PLATFORMS}


def backend_for(platform: str) -> PushBackend | None:
    """The backend instance delivering to ``platform``, or None when it is not configured.

    Raises whatever the backend's constructor raises (``ImproperlyConfigured`` for missing
    credentials).
    """
    from django.conf import settings

    path = parse_config(settings.PUSH_BACKENDS)[platform]
    if path == "none":
        return None
    with _lock:
        backend = _instances.get(path)
        if backend is None:
            backend_class = import_string(path)
            if not (isinstance(backend_class, type) and issubclass(backend_class, PushBackend)):
                raise ImproperlyConfigured(f"{path} is not a PushBackend.")
            backend = _instances[path] = backend_class()
    return backend


def reset() -> None:
    """Close and forget the backend instances (after a settings change; tests)."""
    with _lock:
        instances = list(_instances.values())
        _instances.clear()
    for backend in instances:
        backend.close()


def _on_setting_changed(*, setting: str, **_kwargs) -> None:
    if setting.startswith(("PUSH_", "FCM_", "APNS_")):
        reset()


setting_changed.connect(_on_setting_changed)
