"""A per-viewer cache of the home feed's first page, checked against versions on every read.

A first page costs ~4 ms of CPU (half in PostgreSQL, ``moments.feed``); it is read far more often
than anything on it changes. So the rendered page is kept in Redis per viewer, with the
**versions of everything it was built from**, and a read serves it only when every one of those
versions is still current (Twitter's and Instagram's versioned timeline pages). Nothing is ever
"invalidated" by finding and deleting entries: a write bumps the versions of what it changed, and
every entry built from an older version stops matching. Correctness does not depend on knowing
which entries a write affects, only on the write bumping what it changed.

Versions (Redis strings, each a value of one global counter ``seq``):

* ``v:<user>``, the user **as a viewer**: their timeline (fan-out into it; a post shown again by
  staff), their friendships and blocks in both directions (who is a friend decides which posts,
  likes and comments they see), both directions' per-friend settings, and the "last N days"
  setting of any of their friends (a wider window brings old posts back).
* ``p:<post>``: the post and what is shown with it: deleted, hidden or shown again by staff,
  liked or unliked, commented, a comment deleted.
* ``u:<user>``, the user **as shown**: public profile (name, handle, avatar) and their own
  "last N days" setting. Every person a page shows is a dependency: authors, likers, commenters
  and the people replies answer.

An entry records ``key version`` pairs for the viewer, every post shown and every person shown.
A read is **one round trip**: a Lua script reads the entry, compares every version it lists with
the current one, and answers the entry, or ``seq`` when any differs (~90 versions for a page of
20 posts: compared in Redis, the client neither sends nor parses them). Time is the one input no write announces: an entry expires no later
than the moment its first post leaves its author's window (``FeedPage.expires_at``) and never
lives longer than ``MOMENTS_FEED_CACHE_TTL``; time only ever removes posts from a page.

**Races.** A reader reads ``seq`` (G) *before* it runs the page query, and after the query
reads the versions of what the page shows. A write bumps twice. Inside its transaction it marks
each version ``pending`` (for ``PENDING``, 120 s, longer than any transaction) and moves ``seq``
on; after its commit it gives each version a number, ``seq + 1``. A pending version never equals
a stored one, and a page that depends on one is never stored (the write may or may not be in it).
If any version read is above G, a write bumped it after the reader began: the page is not stored
either. Otherwise the page is stored under versions all <= G; a write that commits after the
page's snapshot bumps after its commit, hence after G was read, to a value above G, which no
stored version equals. Two writers' marks on one version are kept apart (``<version>:w`` lists
the open writers): the version gets its number when the last of them bumps after commit, or when
their marks expire. A version key that is missing (never bumped, expired or evicted) is
created as G only while ``seq`` still equals G (nothing was bumped since the reader began: the
change it stood for, if any, is older than the read); otherwise as a fresh value above G, and
the page is not stored (the version may have been bumped after G, then evicted). So the version
keys may expire or be evicted; ``seq`` must not go backwards (it never expires; if lost it
restarts from the clock in microseconds, above any value it gave). If the after-commit bump is
lost (the process died after COMMIT, Redis did not answer twice), the versions stay pending until
their mark expires, then come back above every stored version: misses, never a stale page. A
rolled-back write leaves its marks: misses on what it touched for up to ``PENDING``.

Every entry also depends on the generation (``gen``), which :func:`clear` bumps: after a Redis
restore or failover (which may lose the latest bumps and keep older entries), or rows written
outside the services, ``manage.py moments_feed_cache_clear`` ends every entry at once.

**Failures.** The read script starts with ``#!lua``: Redis 7 then refuses it whenever it refuses
writes (out of memory under ``noeviction``, a read-only replica, a failed disk), and the page is
read from PostgreSQL, so a page is never served while the bumps that should end it are refused.
Other Redis errors on a read are logged and the page is read from PostgreSQL. A write that takes
something away (a block, an unfriend, a deletion, a hide, an unlike...: ``changed(removes=True)``)
whose bump inside the transaction fails while pages are served from the cache raises
:class:`CacheUnavailable` (503, ``temporarily_unavailable``): it rolls back rather than leave
cached pages showing what it removed. A write that adds is made and relies on its after-commit
bump. Failed bumps are logged and counted (``superapp_moments_feed_cache_bump_failures_total``).

Never cached: a cursor (later pages), a page size other than the default (one entry per viewer);
a storage that may sign or expire its URLs (only the local disk and S3 without query-string
authentication qualify: :func:`stable_urls`; the entry's key holds where URLs point, so a new
``MEDIA_URL`` or CDN domain starts new entries). Writers bump whenever ``MOMENTS_FEED_CACHE_URL``
is set, even where ``MOMENTS_FEED_CACHE`` (serving from the cache) is off, so the cache can be
turned on and off. Every process must bump where readers look: one ``MOMENTS_FEED_CACHE_URL`` and
one key prefix (:func:`_prefix`) for the whole deployment, and no process running older code
while any serves from the cache (docs/moments.md, "Rollout").
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from prometheus_client import Counter
from rest_framework import status

from superapp.core import metrics
from superapp.core.errors import ApplicationError

logger = logging.getLogger(__name__)

# Bump the part of an entry's key that names its format when the stored shape changes (the page
# statement's own changes are covered: its hash is in the key too, see ``_entry_key``).
FORMAT = 3
# A server's clock may run ahead of another's: an entry ends this much before its first post
# leaves its author's window.
CLOCK_MARGIN = timedelta(seconds=1)

# How long a version stays "pending" after the bump inside a transaction when no after-commit bump
# replaces it (the process died): longer than any transaction (DB_STATEMENT_TIMEOUT is 30 s).
PENDING = timedelta(seconds=120)

outcomes = Counter(
    "superapp_moments_feed_cache_total",
    "Home feed first-page reads by cache outcome (hit, miss, stored; skipped: built, not stored)",
    ["outcome"],
)

# Creates ``seq`` from the clock (microseconds) when it is missing: above any value it gave.
_SEQ_INIT = """
local function seq_init(seq)
  if redis.call('EXISTS', seq) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', seq, t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""
# The bump inside the writing transaction. KEYS[1] = seq, KEYS[2..] = versions; ARGV[1] = the
# writer's token, ARGV[2] = how long the marker lives (ms). Each version becomes "pending" (never
# equal to a stored version, never stored under) and the writer is listed in "<version>:w" until
# its after-commit bump; seq moves on, so a version that comes back after the marker expired is
# above every entry's.
_PEND = (
    _SEQ_INIT
    + """
seq_init(KEYS[1])
redis.call('INCR', KEYS[1])
local till = now_ms() + tonumber(ARGV[2])
for i = 2, #KEYS do
  local w = KEYS[i] .. ':w'
  redis.call('ZADD', w, till, ARGV[1])
  redis.call('PEXPIRE', w, ARGV[2])
  redis.call('SET', KEYS[i], 'pending', 'PX', ARGV[2])
end
"""
)
# The bump after commit (or of a write made outside a transaction). KEYS[1] = seq, KEYS[2..] =
# versions; ARGV[1] = their lifetime (ms), ARGV[2] = the writer's token ("" when it marked none).
# A version another writer still holds "pending" (its transaction is open) stays pending: that
# writer's own after-commit bump gives it its number. Returns the new seq.
_BUMP = (
    _SEQ_INIT
    + """
seq_init(KEYS[1])
local v = redis.call('INCR', KEYS[1])
local now = now_ms()
for i = 2, #KEYS do
  local w = KEYS[i] .. ':w'
  if ARGV[2] ~= '' then redis.call('ZREM', w, ARGV[2]) end
  redis.call('ZREMRANGEBYSCORE', w, '-inf', now)
  if redis.call('EXISTS', w) == 0 then redis.call('SET', KEYS[i], v, 'PX', ARGV[1]) end
end
return v
"""
)
# KEYS[1] = the entry, KEYS[2] = seq. The entry's first line is "key version key version ...":
# every version is read and compared here, in Redis, in the same round trip as the entry (the
# keys are not declared: one Redis, not a cluster). Returns {1, entry} when all match, else
# {0, seq} (seq for the miss's race check).
# "#!lua" (no flags) makes Redis 7 treat this script as one that may write: it refuses it while
# it refuses writes (out of memory under noeviction, a read-only replica, a failed disk), so a
# read never serves an entry that the bumps of that moment could not end; the read then comes
# from PostgreSQL. ("flags=no-writes" would do the opposite: it implies allow-oom and runs on
# replicas.) Redis < 7 rejects the line: every read then comes from PostgreSQL.
_READ = """#!lua
local raw = redis.call('GET', KEYS[1])
local seq = redis.call('GET', KEYS[2])
if not raw then return {0, seq} end
local nl = string.find(raw, '\\n', 1, true)
if not nl then return {0, seq} end
local checked = 0
for k, v in string.gmatch(string.sub(raw, 1, nl - 1), '(%S+) (%S+)') do
  if redis.call('GET', k) ~= v then return {0, seq} end
  checked = checked + 1
end
if checked == 0 then return {0, seq} end
return {1, raw}
"""
# KEYS[1] = seq, KEYS[2..] = versions an entry depends on; ARGV[1] = G (seq read before the page
# query), ARGV[2] = lifetime (ms) of a version created here, ARGV[3] = how many of the first
# versions never expire (the generation). Returns the current versions. A
# missing version is created as G only while seq still equals G (nothing was bumped since the
# reader began); otherwise as a fresh value above G, so this page is not stored (the version may
# have been bumped after G and then evicted). A missing version that a writer still holds (its
# marker was evicted) is answered "pending".
_READ_OR_CREATE = (
    _SEQ_INIT
    + """
local quiet = redis.call('GET', KEYS[1]) == ARGV[1]
local fresh = nil
local out = {}
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then
    if redis.call('EXISTS', KEYS[i] .. ':w') == 1 then
      v = 'pending'
    else
      if quiet then
        v = ARGV[1]
      else
        if not fresh then
          seq_init(KEYS[1])
          fresh = redis.call('INCR', KEYS[1])
        end
        v = fresh
      end
      if i - 1 <= tonumber(ARGV[3]) then
        redis.call('SET', KEYS[i], v)
      else
        redis.call('SET', KEYS[i], v, 'PX', ARGV[2])
      end
    end
  end
  out[i - 1] = v
end
return out
"""
)
# KEYS[1] = seq, KEYS[2] = the generation (a version every entry depends on). seq is moved up to
# the clock (after a restore it may have gone back), then the generation is bumped, for good.
_CLEAR = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(cur) < tonumber(now) then redis.call('SET', KEYS[1], now) end
local v = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], v)
return v
"""


@dataclass(frozen=True)
class RenderedPage:
    """A first page: the ``results`` list as JSON bytes, and where the next page starts."""

    posts_json: bytes
    next_position: tuple[datetime, int] | None
    outcome: str  # "hit", "miss" or "off" (not cached here)


class CacheUnavailable(ApplicationError):
    """A write that takes something away from feeds (a block, a deletion, a hide...) could not
    end the cached pages that show it (Redis refused or did not answer): the write is not made,
    rather than leave those pages served. Retrying later is safe."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "temporarily_unavailable"
    default_message = _("This change cannot be made right now. Please try again in a moment.")


class _Redis:
    """One client per process (redis-py's pool is thread-safe) and the scripts."""

    _lock = threading.Lock()
    _instances: dict[str, _Redis] = {}

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.pend = self.client.register_script(_PEND)
        self.bump = self.client.register_script(_BUMP)
        self.read_or_create = self.client.register_script(_READ_OR_CREATE)
        self.read = self.client.register_script(_READ)
        self.clear = self.client.register_script(_CLEAR)

    @classmethod
    def get(cls) -> _Redis | None:
        url = settings.MOMENTS_FEED_CACHE_URL
        if not url:
            return None
        with cls._lock:
            if url not in cls._instances:
                cls._instances[url] = cls(url)
            return cls._instances[url]


def _prefix() -> str:
    """``MOMENTS_FEED_CACHE_PREFIX``, else the Django cache's namespace (a test run gets its own)
    and a hash of the database's name and host: two deployments (or a benchmark and a dev server)
    sharing one Redis database never see each other's pages (user ids overlap). Every process of
    a deployment must agree on it (docs/moments.md, "Rollout")."""
    db = settings.DATABASES["default"]
    return _namespace(
        settings.MOMENTS_FEED_CACHE_PREFIX,
        settings.CACHES["default"].get("KEY_PREFIX") or "superapp",
        str(db.get("NAME") or ""),
        str(db.get("HOST") or ""),
    )


@functools.cache
def _namespace(explicit: str, cache_prefix: str, db_name: str, db_host: str) -> str:
    # No whitespace: an entry lists its version keys separated by spaces.
    if explicit:
        return "".join(explicit.split())
    database = hashlib.sha256(f"{db_name}@{db_host}".encode()).hexdigest()[:10]
    return f"{''.join(cache_prefix.split())}:mfeed:{database}"


def viewer_key(user_id: int) -> str:
    return f"{_prefix()}:v:{user_id}"


def post_key(post_id: int) -> str:
    return f"{_prefix()}:p:{post_id}"


def person_key(user_id: int) -> str:
    return f"{_prefix()}:u:{user_id}"


def _seq_key() -> str:
    return f"{_prefix()}:seq"


def _generation_key() -> str:
    # A version every entry depends on: clear() bumps it.
    return f"{_prefix()}:gen"


@functools.cache
def _statement_hash() -> str:
    from . import feed

    return feed.statement_name()


def _entry_key(viewer_id: int, limit: int) -> str:
    # What shapes a page besides the data: the statement, the limits, where file URLs point.
    shape = (
        f"{FORMAT}.{_statement_hash()}.{settings.MOMENTS_LIKES_SHOWN}.{settings.MOMENTS_COMMENTS_SHOWN}"
        f".{_url_base(default_storage)}"
    )
    return f"{_prefix()}:e:{shape}:{viewer_id}:{limit}"


def stable_urls(storage) -> bool:
    """Whether the storage's file URLs are a function of the name alone (never signed, never
    expiring), so that a page with URLs in it may be kept: the local disk, or django-storages'
    S3 storage with ``querystring_auth`` off (as ``settings.s3_media_storage`` configures it).
    Exact classes only: a subclass may sign."""
    cls = storage.__class__
    if cls is FileSystemStorage:
        return True
    return (
        cls.__module__ == "storages.backends.s3"
        and cls.__name__ == "S3Storage"
        and getattr(storage, "querystring_auth", True) is False
    )


def _url_base(storage) -> str:
    # A URL of a fixed name: the part every file URL shares (host, bucket, prefix). Kept on the
    # storage object (a new one comes with new settings).
    base = getattr(storage, "_moments_feed_url_base", None)
    if base is None:
        base = storage.url("x")
        storage._moments_feed_url_base = base
    return base


def _version_ttl_ms() -> int:
    # Correctness does not depend on it (a missing version is recreated above every entry's);
    # long enough that an entry's versions outlive it.
    return (2 * settings.MOMENTS_FEED_CACHE_TTL + 60) * 1000


def serving() -> bool:
    """Whether first pages are served from the cache here."""
    return (
        settings.MOMENTS_FEED_CACHE
        and bool(settings.MOMENTS_FEED_CACHE_URL)
        # Only a storage whose URL is a function of the file name: never signed, never expiring.
        and stable_urls(default_storage)
    )


# --- write side -------------------------------------------------------------------------------


def changed(
    *,
    viewers: Iterable[int] = (),
    posts: Iterable[int] = (),
    people: Iterable[int] = (),
    removes: bool = False,
) -> None:
    """Record that a write changed what these viewers see, these posts, these people as shown.

    Call inside the writing transaction (anywhere in it): marks the versions "pending" at once,
    and bumps them to a number after commit (see the module's docstring).

    Args:
        removes: the write takes something away (access, a post, a like, a comment, a name):
            when the bump inside the transaction fails while pages are served from the cache,
            :class:`CacheUnavailable` is raised, so the write rolls back instead of leaving
            cached pages showing what it removed. Other failures are logged and counted.
    """
    redis = _Redis.get()
    if redis is None:
        return
    keys = sorted(
        {viewer_key(u) for u in viewers} | {post_key(p) for p in posts} | {person_key(u) for u in people}
    )
    if not keys:
        return
    if not transaction.get_connection().in_atomic_block:  # autocommit: the change is committed
        _bump_after_commit(keys, "")
        return
    token = secrets.token_hex(8)
    try:
        _bump_now(keys, token)
    except Exception as exc:
        metrics.moments_feed_cache_bump_failures.labels(when="before_commit").inc()
        if removes and serving():
            logger.warning("moments feed cache: bump failed for %d keys; the write is refused", len(keys))
            raise CacheUnavailable() from exc
        logger.exception("moments feed cache: bump failed for %d keys (before commit)", len(keys))
    transaction.on_commit(lambda: _bump_after_commit(keys, token), robust=True)


_BUMP_CHUNK = 1000  # keys per script call: a fan-out to 5,000 readers is 5 calls


def _bump_now(keys: list[str], token: str) -> None:
    """The bump inside the transaction (before commit): marks the versions "pending" for
    ``PENDING``, so entries built before the write stop matching at once, and no page built
    while the transaction is open is stored, even if the after-commit bump never comes (the
    process died after COMMIT). Raises on a Redis error."""
    redis = _Redis.get()
    if redis is None:
        return
    ms = int(PENDING.total_seconds() * 1000)
    for start in range(0, len(keys), _BUMP_CHUNK):
        redis.pend(keys=[_seq_key(), *keys[start : start + _BUMP_CHUNK]], args=[token, ms])


def _bump(keys: list[str], token: str = "") -> None:
    """Bump the versions to a new number (after commit): ``token``'s pending marks go. Raises on
    a Redis error."""
    redis = _Redis.get()
    if redis is None:
        return
    for start in range(0, len(keys), _BUMP_CHUNK):
        redis.bump(keys=[_seq_key(), *keys[start : start + _BUMP_CHUNK]], args=[_version_ttl_ms(), token])


def _bump_after_commit(keys: list[str], token: str) -> None:
    """The after-commit bump, tried twice; a failure is logged and counted
    (``superapp_moments_feed_cache_bump_failures_total{when="after_commit"}``): the versions
    then stay pending until ``PENDING`` ends (misses, nothing stale), or for a write that marked
    none, entries it should have ended live at most ``MOMENTS_FEED_CACHE_TTL``."""
    for attempt in (1, 2):
        try:
            _bump(keys, token)
            return
        except Exception:
            if attempt == 2:
                metrics.moments_feed_cache_bump_failures.labels(when="after_commit").inc()
                logger.exception("moments feed cache: bump failed for %d keys (after commit)", len(keys))


# --- read side --------------------------------------------------------------------------------


def _dependencies(viewer_id: int, posts: list[dict]) -> list[str]:
    people: set[int] = set()
    for post in posts:
        people.add(post["author"]["id"])
        people.update(brief["id"] for brief in post["likes"])
        for comment in post["comments"]:
            people.add(comment["author"]["id"])
            if comment["reply_to_user"] is not None:
                people.add(comment["reply_to_user"]["id"])
    return [
        _generation_key(),  # first: never expires (ARGV[3] of _READ_OR_CREATE)
        viewer_key(viewer_id),
        *(post_key(post["id"]) for post in posts),
        *(person_key(uid) for uid in sorted(people)),
    ]


def first_page(*, viewer_id: int, limit: int, build) -> RenderedPage:
    """The first page of ``viewer_id``'s feed: from the cache when current, else ``build()``
    (a ``FeedPage``), stored when that is safe."""
    if not serving():
        return _render(build(), "off")
    redis = _Redis.get()
    key = _entry_key(viewer_id, limit)
    try:
        found, value = redis.read(keys=[key, _seq_key()])
    except Exception:  # Redis down: serve from PostgreSQL
        logger.exception("moments feed cache: read failed")
        return _render(build(), "off")
    if found:
        outcomes.labels(outcome="hit").inc()
        _versions, position, body = value.split(b"\n", 2)
        return RenderedPage(body, _position(position), "hit")
    seq = value
    outcomes.labels(outcome="miss").inc()
    page = build()  # runs after seq was read: the order the race argument needs
    rendered = _render(page, "miss")
    try:
        _store(redis, key, viewer_id, page, rendered, seq)
    except Exception:  # the page is served all the same
        logger.exception("moments feed cache: store failed")
    return rendered


def _render(page, outcome: str) -> RenderedPage:
    return RenderedPage(orjson.dumps(page.posts), page.next_position, outcome)


def _position(line: bytes) -> tuple[datetime, int] | None:
    if not line:
        return None
    created, _, post_id = line.decode().partition("|")
    return datetime.fromisoformat(created), int(post_id)


def _store(redis: _Redis, key: str, viewer_id: int, page, rendered: RenderedPage, seq) -> None:
    if seq is None:  # no counter yet (a new Redis): create it, store next time
        redis.bump(keys=[_seq_key()], args=[_version_ttl_ms(), ""])
        outcomes.labels(outcome="skipped").inc()
        return
    seq = int(seq)
    keys = _dependencies(viewer_id, page.posts)
    found = redis.read_or_create(keys=[_seq_key(), *keys], args=[seq, _version_ttl_ms(), 1])
    if any(v == b"pending" for v in found):  # a write's transaction is open: maybe not in the page
        outcomes.labels(outcome="skipped").inc()
        return
    versions = [int(v) for v in found]
    if any(v > seq for v in versions):  # a write bumped after this read began: maybe not in the page
        outcomes.labels(outcome="skipped").inc()
        return
    ttl = timedelta(seconds=settings.MOMENTS_FEED_CACHE_TTL)
    if page.expires_at is not None:
        ttl = min(ttl, page.expires_at - CLOCK_MARGIN - timezone.now())
    ttl_ms = int(ttl.total_seconds() * 1000)
    if ttl_ms <= 0:
        outcomes.labels(outcome="skipped").inc()
        return
    # Three lines: "key version key version ..." (what _READ checks), the next position, the posts.
    versions_line = " ".join(f"{k} {v}" for k, v in zip(keys, versions, strict=True))
    position = page.next_position
    position_line = f"{position[0].isoformat()}|{position[1]}" if position else ""
    value = f"{versions_line}\n{position_line}\n".encode() + rendered.posts_json
    redis.client.set(key, value, px=ttl_ms)
    outcomes.labels(outcome="stored").inc()


# accounts' hooks (registered in ``MomentsConfig.ready``)


def contacts_changed(user_ids: list[int], *, removed: bool) -> None:
    """A friendship or a block between these users was made or removed (both sides are given)."""
    changed(viewers=user_ids, removes=removed)


def profile_changed(user_id: int) -> None:
    """A public profile (name, handle, avatar) changed: every page showing the person (the old
    name or avatar must go: a removal)."""
    changed(people=[user_id], removes=True)


def clear() -> int | None:
    """End every entry of this cache at once: bumps the generation, a version every entry
    depends on, after moving ``seq`` up to the clock (a restored Redis may have taken it back).
    For a restored database or Redis, a Redis failover, rows written outside the services (a
    benchmark's seed), or the cache turned back on after Redis refused bumps:
    ``manage.py moments_feed_cache_clear``. Returns the new generation (None: no cache URL)."""
    redis = _Redis.get()
    if redis is None:
        return None
    return int(redis.clear(keys=[_seq_key(), _generation_key()]))
