"""The feed's rendering shortcuts: orjson writes exactly DRF's JSON, and file URLs are remembered
only for storages whose URL is a function of the name."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from itertools import count

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from moments import events
from moments.api.renderers import FastJSONRenderer
from tests.conftest import befriend

from .conftest import publish

PAYLOADS = [
    {"results": [{"id": 1, "text": "plain"}], "next": None, "previous": None},
    {"text": 'say "hi" \\ 中文 😀 “quoted” … \u2028 and \u2029 </script>\n\t', "n": -(2**63)},
    {"message": gettext_lazy("Not found."), "fields": {"a": [gettext_lazy("This field is required.")]}},
    {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=dt.UTC),
        "whole": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "time": dt.time(3, 4, 5),
        "amount": Decimal("12.30"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "floats": [0.1, 31.2397, -121.4998, 1.5, 0.0],
        "flags": [True, False, None],
    },
    {1: "integer keys", 2: {"nested": True}},  # orjson refuses: DRF's path
    {"big": 2**70},  # past 64 bits: DRF's path
    [],
    "",
]


@pytest.mark.parametrize("data", PAYLOADS)
def test_same_bytes_as_drf(data):
    assert FastJSONRenderer().render(data, "application/json", {}) == JSONRenderer().render(
        data, "application/json", {}
    )


def test_indent_none_and_unknown_objects_behave_as_drf():
    data = {"a": [1, {"b": "c"}]}
    for media_type in ("application/json; indent=2", "application/json; indent=0"):
        assert FastJSONRenderer().render(data, media_type, {}) == JSONRenderer().render(data, media_type, {})
    assert FastJSONRenderer().render(None) == b""
    with pytest.raises(TypeError):
        JSONRenderer().render({"x": object()})
    with pytest.raises(TypeError):
        FastJSONRenderer().render({"x": object()})


@pytest.mark.django_db
def test_the_feed_answers_what_drf_would_write(client_for, alice, bob):
    befriend(alice, bob)
    publish(bob, "line\u2028separator “curly” 😀")
    response = client_for(alice).get("/api/v1/moments/feed")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == JSONRenderer().render(response.json())
    assert b"\\u2028" in response.content


def test_file_urls_follow_the_storage_settings(settings):
    name = "moments/2026/a b é.jpg"
    assert default_storage.__class__ is FileSystemStorage
    assert events.file_url(name) == default_storage.url(name)
    settings.MEDIA_URL = "https://cdn.example.com/m/"
    assert events.file_url(name) == "https://cdn.example.com/m/moments/2026/a%20b%20%C3%A9.jpg"
    assert events.file_url("") is None and events.file_url(None) is None


_calls = count()


class ExpiringUrlStorage(FileSystemStorage):
    """Signs its URLs with something that changes, like S3's query-string authentication."""

    def url(self, name):
        return f"{super().url(name)}?signature={next(_calls)}"


def test_other_storages_urls_are_never_remembered(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.ExpiringUrlStorage"},
    }
    assert default_storage.__class__ is ExpiringUrlStorage
    assert events.file_url("x.jpg") != events.file_url("x.jpg")
