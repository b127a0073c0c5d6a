"""The anchors the benchmarks compare with, measured in the same run on the same machine.

* ``bare_asgi_app``: the least an ASGI server can do per request (uvicorn, no framework).
* ``pk_select_view``: a plain Django view doing one primary-key SELECT and returning JSON, under
  gunicorn, with the project's settings and middleware (``bench.anchor_settings``): what one
  database read costs in this Django with nothing of ours (no DRF, no JWT, no serializer).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import JsonResponse

_BODY = b'{"ok":true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def bare_asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def pk_select_view(request, pk: int):
    row = get_user_model().objects.filter(pk=pk).values("id", "handle", "display_name").first()
    return JsonResponse(row or {}, status=200 if row else 404)


def healthz(request):
    return JsonResponse({"status": "ok"})
