from django.urls import path

from . import views

urlpatterns = [
    path("devices", views.DeviceListView.as_view(), name="push-devices"),
    path("devices/<int:device_id>", views.DeviceDetailView.as_view(), name="push-device"),
]
