"""Push device REST API: the app registers its push token, lists and removes its devices."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from . import serializers as s


def _context(request: Request) -> dict:
    return {"current_session_id": getattr(request.user, "login_session_id", None)}


class DeviceListView(APIView):
    @extend_schema(
        request=s.DeviceRegisterSerializer,
        responses={200: s.DeviceSerializer, 201: s.DeviceSerializer},
        tags=["push"],
        summary="Register this app's push token (idempotent; 201 when new, 200 when known)",
    )
    def post(self, request: Request) -> Response:
        serializer = s.DeviceRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device, created = services.device_register(
            user=request.user,
            session_id=getattr(request.user, "login_session_id", None),
            **serializer.validated_data,
        )
        return Response(
            s.DeviceSerializer(device, context=_context(request)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(responses=s.DeviceSerializer(many=True), tags=["push"], summary="My push devices")
    def get(self, request: Request) -> Response:
        devices = selectors.device_list(user_id=request.user.pk)
        return Response(s.DeviceSerializer(devices, many=True, context=_context(request)).data)


class DeviceDetailView(APIView):
    @extend_schema(
        responses={204: OpenApiResponse(description="Done.")},
        tags=["push"],
        summary="Stop pushing to a device of mine",
    )
    def delete(self, request: Request, device_id: int) -> Response:
        services.device_delete(user=request.user, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
