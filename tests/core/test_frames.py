"""superapp.core.frames: the frames' JSON says what the stdlib's did, written once per object."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid

import pytest
from django.utils.translation import gettext_lazy

from superapp.core import frames


def stdlib(content):
    """The consumer's encoder before orjson."""
    return json.dumps(content, separators=(",", ":"), default=str)


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "content",
    [
        {"type": "pong", "cursor": 3, "ref": "r1"},
        {"type": "message.new", "cursor": 12, "data": {"text": '你好 héllo "quoted" \\ \n\t', "n": None}},
        {
            "when": datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC),
            "day": datetime.date(2026, 1, 2),
        },
        {"amount": decimal.Decimal("1.50"), "id": uuid.UUID(int=7), "point": Point(1)},
        {"message": gettext_lazy("Something went wrong.")},
        {1: "int key", "nested": {2: [True, False, 1.5, -3]}},
        {"big": 2**70, "list": [2**64]},  # past orjson's 64 bits: the stdlib writes it
        {"lone": "\ud800"},  # orjson refuses lone surrogates: the stdlib escapes them
        [],
        {"emoji": "😀", "sep": "\u2028"},
    ],
)
def test_dumps_says_what_the_stdlib_said(content):
    text = frames.dumps(content)
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(stdlib(content))


def test_an_envelope_is_written_around_its_datas_text_once():
    data = {"id": 1, "text": "hello", "when": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}
    envelopes = [{"type": "message.new", "cursor": c, "data": data} for c in (5, 9, 10)]
    writer = frames.FrameWriter()
    texts = [writer.envelope(e) for e in envelopes]
    assert [json.loads(t) for t in texts] == [json.loads(stdlib(e)) for e in envelopes]
    assert [list(json.loads(t)) for t in texts] == [["type", "cursor", "data"]] * 3  # key order kept
    assert len([obj for obj, _ in writer._texts.values() if obj is data]) == 1  # written once


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "typing", "data": {"user_id": 1}},  # an ephemeral frame: no cursor
        {"type": "x", "cursor": True, "data": {}},  # not an int cursor
        {"cursor": 1, "type": "x", "data": {}},  # other key order
        {"type": "x", "cursor": 1, "data": {}, "extra": 1},
    ],
)
def test_other_frames_are_written_whole(frame):
    writer = frames.FrameWriter()
    assert json.loads(writer.envelope(frame)) == json.loads(stdlib(frame))
    assert writer.envelope(frame) is writer.envelope(frame)  # the same object: one text
