"""Ephemeral frames (typing, presence): straight through the channel layer, never stored.

They are best effort by design: a dropped "typing" costs nothing, and presence can be asked for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache

from superapp.core.events import user_group

logger = logging.getLogger(__name__)
CONCURRENCY = 32  # group sends in flight (a group's "typing" reaches up to 499 users)


def ephemeral(*, user_ids: Iterable[int], frame: dict[str, Any]) -> None:
    """Send ``frame`` (no cursor) to every connected device of ``user_ids``. Never raises."""
    ids = list(user_ids)
    layer = get_channel_layer()
    if layer is None or not ids:
        return

    async def send_one(uid: int) -> None:
        try:
            await layer.group_send(user_group(uid), {"type": "event.push", "event": frame})
        except Exception:
            logger.warning("ephemeral frame to user %s failed", uid, exc_info=True)

    async def send_all() -> None:
        queue = list(ids)

        async def worker() -> None:
            while queue:
                await send_one(queue.pop())

        await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, len(queue)))))

    async_to_sync(send_all)()


def throttle(key: str, seconds: float) -> bool:
    """True at most once per ``seconds`` for ``key`` (an atomic cache add)."""
    return cache.add(f"messaging:throttle:{key}", 1, timeout=seconds)
