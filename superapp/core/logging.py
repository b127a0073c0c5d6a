"""Structured logging: a request id on every record, JSON lines in production."""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``-`` outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter; one JSON object per line."""
