"""Plumbing endpoints: health, readiness, the event sync, and JSON error pages."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import events
from .errors import json_error_response

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no dependency."""
    return JsonResponse({"status": "ok"})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; with ``METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``."""
    token = settings.METRICS_TOKEN
    if token and not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return json_error_response("not_authenticated", _("A metrics token is required."), 401)
    return ExportToDjangoView(request)


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and Redis answer; 503 naming the one that does not."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        logger.warning("readyz: database unreachable: %s", exc)
        checks["database"] = "unreachable"
    if settings.REDIS_URL:
        import redis

        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
            client.ping()
            client.close()
            checks["redis"] = "ok"
        except Exception as exc:
            logger.warning("readyz: redis unreachable: %s", exc)
            checks["redis"] = "unreachable"
    else:
        checks["redis"] = "not used (embedded default)"
    ready = all(v != "unreachable" for v in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


class EventSerializer(serializers.Serializer):
    type = serializers.CharField()
    cursor = serializers.IntegerField()
    data = serializers.DictField()


class SyncSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    cursor = serializers.IntegerField(help_text="Pass this as `since` next time.")
    has_more = serializers.BooleanField()
    latest = serializers.IntegerField(help_text="The newest cursor of the stream.")


class SyncQuerySerializer(serializers.Serializer):
    since = serializers.IntegerField(min_value=0)
    limit = serializers.IntegerField(min_value=1, max_value=500, default=100)


class SyncView(APIView):
    """Events the caller's devices must see, after a cursor (``sync since <cursor>``)."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", int, required=True, description="Last cursor the device has seen (0 for all)."
            ),
            OpenApiParameter("limit", int, description="At most this many events (1-500, default 100)."),
        ],
        responses=SyncSerializer,
        summary="Events after a cursor",
    )
    def get(self, request: Request) -> Response:
        query = SyncQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = events.events_since(user_id=request.user.pk, **query.validated_data)
        return Response(page)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_response("bad_request", _("Bad request."), 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_response("forbidden", _("You are not allowed to do this."), 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_response("not_found", _("Not found."), 404)


def server_error(request: HttpRequest) -> JsonResponse:
    return json_error_response("server_error", _("Something went wrong. It has been logged."), 500)
