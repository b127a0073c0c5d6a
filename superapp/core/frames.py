"""The JSON text of the frames the WebSocket sends, written by orjson, and once per event.

:func:`dumps` says what ``json.dumps(content, separators=(",", ":"), default=str)`` said (the
consumer's encoder until now) at a fraction of its CPU: datetimes and dataclasses still go
through ``str()`` (orjson would write them its own way), keys that are not strings become
strings as in the stdlib, and whatever orjson refuses (integers past 64 bits, lone surrogates)
falls back to the stdlib. Differences that keep the meaning: non-ASCII characters are written
as UTF-8 instead of ``\\u`` escapes, a float may be spelt differently (``1e16`` for ``1e+16``),
and a NaN becomes ``null`` (the stdlib wrote ``NaN``, which is not JSON).

:class:`FrameWriter` turns the event envelopes of one doorbell into frame texts: an envelope
``{"type", "cursor", "data"}`` is written around its ``data``'s text, and every envelope that
shares one ``data`` object (the 500 copies of one group message, one per member, differ only
in their cursor) shares one serialization of it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(content: Any) -> str:
    """Compact JSON text of ``content``; what orjson does not know itself is written ``str()``."""
    try:
        return orjson.dumps(content, default=str, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(content, separators=(",", ":"), default=str)


_ENVELOPE_KEYS = ("type", "cursor", "data")


class FrameWriter:
    """Writes the frames of one batch; remembers the text of each object it has written.

    Objects are remembered by identity, so a writer must not outlive the objects it was given
    (one doorbell: the caller holds them all until it is done).
    """

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}

    def _memo(self, obj: Any) -> str:
        hit = self._texts.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        text = dumps(obj)
        self._texts[id(obj)] = (obj, text)
        return text

    def envelope(self, envelope: Any) -> str:
        """The text of one frame: an event envelope (or an ephemeral frame shared by many)."""
        if (
            type(envelope) is dict
            and tuple(envelope) == _ENVELOPE_KEYS
            and type(envelope["cursor"]) is int
            and type(envelope["type"]) is str
        ):
            return (
                f'{{"type":{self._memo(envelope["type"])},"cursor":{envelope["cursor"]},'
                f'"data":{self._memo(envelope["data"])}}}'
            )
        return self._memo(envelope)
