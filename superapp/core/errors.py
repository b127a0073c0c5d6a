"""One error shape everywhere: ``{"error": {"code", "message", "fields"}}``.

Services raise :class:`ApplicationError` (or a subclass); DRF's own exceptions, Django's
``Http404``/``PermissionDenied`` and anything unexpected are mapped to the same shape by
:func:`exception_handler` (DRF views) and by the ``handler*`` views in ``superapp.urls``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A business-rule failure that the client can act on.

    Attributes:
        code: stable machine-readable code (snake_case); clients switch on it.
        message: human-readable, translated text.
        fields: optional per-field messages ({"field": ["message", ...]}).
        status_code: HTTP status used when the error reaches the REST layer.
    """

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"
    default_message = _("The request could not be completed.")

    def __init__(
        self,
        message: Any = None,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        status_code: int | None = None,
    ) -> None:
        self.message = str(message if message is not None else self.default_message)
        self.code = code or self.default_code
        self.fields = fields or {}
        if status_code is not None:
            self.status_code = status_code
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.fields)


class ValidationFailed(ApplicationError):
    default_code = "invalid"
    default_message = _("Some fields are not valid.")


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"
    default_message = _("Not found.")


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "forbidden"
    default_message = _("You are not allowed to do this.")


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_message = _("The request conflicts with the current state.")


class RateLimited(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"
    default_message = _("Too many attempts. Try again later.")


def error_body(code: str, message: Any, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": str(message), "fields": fields or {}}}


def _flatten_detail(detail: Any) -> dict[str, list[str]]:
    """Turn DRF's nested ValidationError detail into ``{"field": ["msg", ...]}``."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in value)
            else:
                for index, sub in enumerate(value):
                    walk(f"{prefix}.{index}" if prefix else str(index), sub)
        else:
            out.setdefault(prefix or "non_field_errors", []).append(str(value))

    walk("", detail)
    return out


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "forbidden",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ParseError: "malformed_request",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler producing the one error shape.

    Unknown exceptions return ``None`` so that Django logs them and answers through
    ``handler500`` (also in the one shape).
    """
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", _("The request body is too large.")),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if not isinstance(exc, drf_exceptions.APIException):
        return None

    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]

    if isinstance(exc, drf_exceptions.ValidationError):
        body = error_body("invalid", _("Some fields are not valid."), _flatten_detail(exc.detail))
    else:
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        detail = exc.detail
        if isinstance(detail, dict):
            # simplejwt puts {"detail", "code", "messages"} here.
            code = str(detail.get("code") or code or "error")
            message = detail.get("detail", "")
        else:
            code = code or str(getattr(detail, "code", "error"))
            message = detail
        if isinstance(exc, drf_exceptions.ParseError):
            code = "malformed_request"
        body = error_body(code, message)
    return Response(body, status=exc.status_code, headers=headers)


def json_error_response(code: str, message: Any, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)
