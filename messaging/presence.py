"""Who has an open socket: presence for "online / last seen" and for choosing whom to push.

Each open socket is a member of a Redis sorted set per user, scored by its expiry time:

* the socket hooks of ``superapp.core.realtime`` add it when it opens and remove it when it
  closes (``apps.MessagingConfig.ready`` registers :func:`on_connect` / :func:`on_disconnect`);
* a socket whose server died never says goodbye, so entries expire: a client sends the frame
  ``presence.heartbeat`` every ``MESSAGING_PRESENCE_TTL / 3`` seconds (it also answers the cursor,
  so it replaces ``ping``), which pushes the expiry of the user's sockets forward;
* a user is online while one of their entries has not expired (``ZCOUNT key now +inf``); many
  users are checked in one round trip (a Lua script over all their keys).

Last seen is written when the last socket closes. Without Redis (the embedded default, one
process) the same lives in this process's memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from functools import cache

from django.conf import settings
from django.core.cache import cache as django_cache


class _LocalStore:
    """One process (embedded default, tests without Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, dict[str, float]] = {}
        self._last_seen: dict[int, float] = {}
        self._windows: dict[str, float] = {}

    def _alive(self, user_id: int, now: float) -> dict[str, float]:
        entries = self._sockets.setdefault(user_id, {})
        for name in [n for n, exp in entries.items() if exp <= now]:
            del entries[name]
        return entries

    def add(self, user_id: int, channel: str, ttl: float) -> bool:
        now = time.time()
        with self._lock:
            entries = self._alive(user_id, now)
            was_empty = not entries
            entries[channel] = now + ttl
            return was_empty

    def remove(self, user_id: int, channel: str) -> bool:
        now = time.time()
        with self._lock:
            entries = self._alive(user_id, now)
            entries.pop(channel, None)
            if not entries:
                self._last_seen[user_id] = now
                return True
            return False

    def refresh(self, user_id: int, ttl: float) -> None:
        now = time.time()
        with self._lock:
            entries = self._alive(user_id, now)
            for name in entries:
                entries[name] = now + ttl
            self._last_seen[user_id] = now

    def online(self, user_ids: Iterable[int]) -> set[int]:
        now = time.time()
        with self._lock:
            return {uid for uid in user_ids if self._alive(uid, now)}

    def last_seen(self, user_ids: Iterable[int]) -> dict[int, float]:
        with self._lock:
            return {uid: self._last_seen[uid] for uid in user_ids if uid in self._last_seen}

    def claim(self, keys: list[str], seconds: float) -> list[bool]:
        now = time.time()
        with self._lock:
            out = []
            for key in keys:
                free = self._windows.get(key, 0) <= now
                if free:
                    self._windows[key] = now + seconds
                out.append(free)
            return out

    def release(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._windows.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._sockets.clear()
            self._last_seen.clear()
            self._windows.clear()


# Many users in one command (a group's members): each returns the 1-based positions of the keys
# that matched. Single-instance Redis (a cluster would need the keys in one hash slot).
_ONLINE_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
    if redis.call('ZCOUNT', key, ARGV[1], '+inf') > 0 then out[#out + 1] = i end
end
return out
"""
_CLAIM_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
    if redis.call('SET', key, '1', 'NX', 'PX', ARGV[1]) then out[#out + 1] = i end
end
return out
"""


class _RedisStore:
    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix
        self._online_script = self.client.register_script(_ONLINE_LUA)
        self._claim_script = self.client.register_script(_CLAIM_LUA)

    def _key(self, user_id: int) -> str:
        return f"{self.prefix}:presence:{user_id}"

    def add(self, user_id: int, channel: str, ttl: float) -> bool:
        now, key = time.time(), self._key(user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        pipe.zadd(key, {channel: now + ttl})
        pipe.expire(key, int(ttl * 2) + 1)
        return pipe.execute()[1] == 0

    def remove(self, user_id: int, channel: str) -> bool:
        now, key = time.time(), self._key(user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(key, channel)
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        gone = pipe.execute()[2] == 0
        if gone:
            self.client.hset(f"{self.prefix}:last_seen", str(user_id), str(now))
        return gone

    def refresh(self, user_id: int, ttl: float) -> None:
        now, key = time.time(), self._key(user_id)
        alive = self.client.zrangebyscore(key, now, "+inf")
        pipe = self.client.pipeline(transaction=False)
        if alive:
            pipe.zadd(key, dict.fromkeys(alive, now + ttl), xx=True)
            pipe.expire(key, int(ttl * 2) + 1)
        pipe.hset(f"{self.prefix}:last_seen", str(user_id), str(now))
        pipe.execute()

    def online(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(user_ids)
        if not ids:
            return set()
        # One script call with every key, not a pipeline of ZCOUNTs: redis-py builds each
        # pipelined command in Python, which cost ~4 ms of CPU for a 500-member group's send.
        found = self._online_script(keys=[self._key(uid) for uid in ids], args=[time.time()])
        return {ids[index - 1] for index in found}

    def last_seen(self, user_ids: Iterable[int]) -> dict[int, float]:
        ids = list(user_ids)
        if not ids:
            return {}
        values = self.client.hmget(f"{self.prefix}:last_seen", [str(u) for u in ids])
        return {uid: float(v) for uid, v in zip(ids, values, strict=True) if v is not None}

    def claim(self, keys: list[str], seconds: float) -> list[bool]:
        if not keys:
            return []
        taken = set(
            self._claim_script(
                keys=[f"{self.prefix}:{key}" for key in keys], args=[max(1, int(seconds * 1000))]
            )
        )
        return [index in taken for index in range(1, len(keys) + 1)]

    def release(self, keys: list[str]) -> None:
        if keys:
            self.client.delete(*[f"{self.prefix}:{key}" for key in keys])

    def clear(self) -> None:  # tests only: this run's keys
        for key in self.client.scan_iter(f"{self.prefix}:*"):
            self.client.delete(key)


@cache
def store() -> _LocalStore | _RedisStore:
    url = settings.MESSAGING_PRESENCE_REDIS_URL
    if not url:
        return _LocalStore()
    # The cache's key prefix namespaces each deployment (and each test run).
    return _RedisStore(url, django_cache.make_key("messaging"))


def ttl() -> float:
    return float(settings.MESSAGING_PRESENCE_TTL)


def socket_opened(*, user_id: int, channel: str) -> bool:
    """Record an open socket; True when the user just came online."""
    return store().add(user_id, channel, ttl())


def socket_closed(*, user_id: int, channel: str) -> bool:
    """Forget a socket; True when it was the user's last one."""
    return store().remove(user_id, channel)


def heartbeat(*, user_id: int) -> None:
    """Push the expiry of the user's open sockets forward (and their last seen time).

    Frames do not say which socket they came on, so every live entry of the user is renewed; an
    entry of a dead server thus lives while another socket of the user heartbeats, and expires
    at most ``MESSAGING_PRESENCE_TTL`` after the last one stops."""
    store().refresh(user_id, ttl())


def online_ids(user_ids: Iterable[int]) -> set[int]:
    return store().online(user_ids)


def last_seen(user_ids: Iterable[int]) -> dict[int, float]:
    return store().last_seen(user_ids)


def claim_windows(keys: list[str], seconds: float) -> list[bool]:
    """For each key, True when it was free (and is now taken for ``seconds``): SET NX PX."""
    return store().claim(keys, seconds)


def release_windows(keys: list[str]) -> None:
    store().release(keys)
