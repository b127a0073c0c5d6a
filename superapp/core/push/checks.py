"""System checks: a push backend that is configured must be loadable with its credentials."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import backends
from .backends.base import PushBackend


@register()
def check_push_backends(app_configs=None, **kwargs) -> list[Error]:
    try:
        config = backends.parse_config(settings.PUSH_BACKENDS)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="push.E001")]
    errors: list[Error] = []
    for path in sorted({p for p in config.values() if p != "none"}):
        try:
            backend_class = import_string(path)
            if not (isinstance(backend_class, type) and issubclass(backend_class, PushBackend)):
                raise ImproperlyConfigured(f"{path} is not a PushBackend.")
            backend_class()  # reads its credentials: the key files exist and parse
        except (ImportError, ImproperlyConfigured) as exc:
            errors.append(Error(f"PUSH_BACKENDS: {exc}", hint="See docs/push.md.", id="push.E002"))
    return errors
