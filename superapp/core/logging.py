"""Structured logging: a request id on every record, JSON lines in production."""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``-`` outside a request) to every record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter; one JSON object per line.

    Django attaches the ``request`` to some records (``django.request``, ``django.security.*``);
    rendered as an extra field its repr would carry the query string, which may hold a socket
    ticket. It is replaced by ``path`` (without the query string); the request id says the rest.
    """

    def process_log_record(self, log_data):
        request = log_data.pop("request", None)
        if request is not None and "path" not in log_data:
            path = getattr(request, "path", None)
            if isinstance(path, str):
                log_data["path"] = path
        return super().process_log_record(log_data)
