"""Serializer plumbing shared by every app's API."""

from rest_framework import serializers


class BuilderSerializer(serializers.Serializer):
    """Declares fields for the OpenAPI schema; renders with ``builder``.

    The builder is the same function that shapes the app's event payloads, so an object looks the
    same in a REST answer and in a WebSocket frame.
    """

    builder = staticmethod(lambda obj: {})

    def to_representation(self, instance):
        return type(self).builder(instance)
