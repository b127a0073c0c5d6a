"""URL map: /api/v1/ (REST), /api/schema/ + /api/docs/ (OpenAPI), /admin/, health, metrics.

The WebSocket route (/ws/) is in ``superapp.asgi``.
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from superapp.core import views as core_views

api_v1 = [
    path("moments/", include("moments.api.urls")),
    path("messaging/", include("messaging.api.urls")),
    path("payments/", include("payments.api.urls")),
    path("pay/", include("payments.api.orders_urls")),  # merchant servers, HMAC-signed (docs/payments.md)
    path("sync", core_views.SyncView.as_view(), name="sync"),
    path("push/", include("superapp.core.push.api.urls")),
    # Last: its prefix is empty, so any path would first try each of its ~30 patterns (~0.1 ms of
    # a feed request); none of them starts with another entry's prefix.
    path("", include("accounts.api.urls")),
]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", core_views.metrics, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

if settings.SERVE_MEDIA:
    # Embedded default only; in production the proxy or object storage serves media.
    urlpatterns.append(
        re_path(
            rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}
        )
    )

handler400 = "superapp.core.views.bad_request"
handler403 = "superapp.core.views.permission_denied"
handler404 = "superapp.core.views.page_not_found"
handler500 = "superapp.core.views.server_error"
