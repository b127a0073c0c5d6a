"""Request plumbing: request id + one structured log line per request, body size limit, NUL."""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.conf import settings
from django.utils.translation import gettext as _

from .errors import json_error_response
from .logging import request_id_var

access_log = logging.getLogger("superapp.access")
# fullmatch, not match with "$": "$" also matches before a trailing newline.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")


class RequestLogMiddleware:
    """Assigns a request id (from ``X-Request-ID`` when a proxy set a sane one) and logs one line.

    The line has method, path (never the query string, which may carry a ticket), status,
    duration, user id and request id. Headers and bodies are never logged, so neither are tokens
    nor passwords.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            self._log(request, response, request_id, started)
        finally:
            request_id_var.reset(token)
        return response

    @staticmethod
    def _log(request, response, request_id: str, started: float) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        response["X-Request-ID"] = request_id
        user = getattr(request, "user", None)
        user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "user_id": user_id,
            },
        )


class BodySizeLimitMiddleware:
    """Rejects bodies larger than ``MAX_REQUEST_BYTES`` with 413 before anything reads them, and
    a NUL character in the path or the query string with 400: no text column can hold one
    (PostgreSQL refuses it), so a lookup by such a path segment would otherwise end in a 500.
    (JSON and form fields are checked by DRF's CharField, which refuses NUL as well.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return json_error_response("malformed_request", _("The URL contains a NUL character."), 400)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error_response("malformed_request", _("Invalid Content-Length."), 400)
        if length > settings.MAX_REQUEST_BYTES:
            return json_error_response("request_too_large", _("The request body is too large."), 413)
        return self.get_response(request)
