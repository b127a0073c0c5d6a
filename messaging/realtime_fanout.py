"""Ephemeral frames (typing, presence): straight through the channel layer, never stored.

They are best effort by design: a dropped "typing" costs nothing, and presence can be asked for.
They take the same path as stored events' doorbells (:func:`superapp.core.layers.group_send_many`):
one Redis ``PUBLISH`` for all the recipients, however many.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.cache import cache

from superapp.core.events import user_group
from superapp.core.layers import group_send_many


def ephemeral(*, user_ids: Iterable[int], frame: dict[str, Any]) -> None:
    """Send ``frame`` (no cursor) to every connected device of ``user_ids``. Never raises."""
    message = {"type": "event.push", "event": frame}
    group_send_many([(user_group(uid), message) for uid in user_ids])


def throttle(key: str, seconds: float) -> bool:
    """True at most once per ``seconds`` for ``key`` (an atomic cache add)."""
    return cache.add(f"messaging:throttle:{key}", 1, timeout=seconds)
