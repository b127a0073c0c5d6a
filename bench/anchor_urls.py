"""URL map of the anchor server (bench only; production never loads it)."""

from django.urls import path

from .anchors import healthz, pk_select_view

urlpatterns = [
    path("healthz", healthz),
    path("anchor/user/<int:pk>", pk_select_view),
]
