"""The per-user event stream: store first, ring the doorbell after commit.

Write side (services call these inside their transaction)::

    publish(user_ids=[a.id, b.id], type="contact.request.received", data={...})

or, when one transaction emits several events to different users, :func:`publish_many`, which
locks all the users' stream heads once, in ascending id order, so that two transactions can
never lock them in opposite orders.

Read side: :func:`events_since` returns what a device missed (``sync since <cursor>``).

The channel layer only carries a copy of the stored envelope to devices that are online; it may
drop it (channels-redis does past a channel's capacity). A device that sees a gap in cursors,
or reconnects, asks for ``sync since <last cursor>`` and gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .errors import ApplicationError, ValidationFailed
from .models import Event, UserStream

logger = logging.getLogger(__name__)

PUSH_CONCURRENCY = 32  # channel-layer sends in flight for one commit's doorbell


@dataclass(frozen=True)
class EventSpec:
    """One event addressed to several users (each gets their own copy and cursor)."""

    user_ids: Sequence[int]
    type: str
    data: dict[str, Any]


def user_group(user_id: int) -> str:
    """Channel-layer group of all the connected devices of one user."""
    return f"user.{user_id}"


def session_group(session_id: Any) -> str:
    """Channel-layer group of the sockets opened with one login session."""
    return f"session.{session_id}"


def publish(*, user_ids: Iterable[int], type: str, data: dict[str, Any]) -> list[Event]:
    """Store one event for each user and push it to their devices after commit.

    Must run inside a transaction (every public service is atomic). Locks the users' stream heads
    until commit; call it late in the transaction.
    """
    return publish_many(specs=[EventSpec(user_ids=list(user_ids), type=type, data=data)])


def publish_many(*, specs: Sequence[EventSpec]) -> list[Event]:
    """Store several events, locking every recipient's stream head once, in id order."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish() must be called inside transaction.atomic()")
    recipients = sorted({uid for spec in specs for uid in spec.user_ids})
    if not recipients:
        return []
    per_user_count: dict[int, int] = {}
    for spec in specs:
        for uid in set(spec.user_ids):
            per_user_count[uid] = per_user_count.get(uid, 0) + 1
    if connection.vendor == "postgresql":
        heads = _advance_heads(per_user_count)
    else:
        heads = _lock_heads(recipients)
        # One UPDATE per distinct increment (almost always exactly one).
        by_increment: dict[int, list[int]] = {}
        for uid, count in per_user_count.items():
            by_increment.setdefault(count, []).append(uid)
        for increment, uids in by_increment.items():
            UserStream.objects.filter(user_id__in=uids).update(last_seq=F("last_seq") + increment)

    rows: list[Event] = []
    next_seq = dict(heads)
    for spec in specs:
        for uid in sorted(set(spec.user_ids)):
            next_seq[uid] += 1
            rows.append(Event(user_id=uid, seq=next_seq[uid], type=spec.type, data=spec.data))
    if connection.vendor == "postgresql":
        _insert_events(specs, rows)
    else:
        Event.objects.bulk_create(rows)
    transaction.on_commit(_doorbell(rows))
    return rows


# Every recipient of one spec gets the same type and data: send each spec's JSON once and let
# PostgreSQL fan it out (a 500-member group message is one short statement, not 500 rows of
# parameters, each serialized again by the ORM).
_INSERT_SQL = """
INSERT INTO core_event (user_id, seq, type, data, created_at)
SELECT v.user_id, v.seq, (%s::text[])[v.spec], ((%s::text[])[v.spec])::jsonb, %s
  FROM unnest(%s::bigint[], %s::bigint[], %s::int[]) AS v(user_id, seq, spec)
"""


def _insert_events(specs: Sequence[EventSpec], rows: list[Event]) -> None:
    """PostgreSQL: insert ``rows`` (built from ``specs``, in order) in one statement. The rows
    get no ``id`` back; nothing reads it (events are addressed by user and cursor)."""
    encoder = Event._meta.get_field("data").encoder
    types, blobs, spec_of_row = [], [], []
    for number, spec in enumerate(specs, start=1):
        types.append(spec.type)
        blobs.append(json.dumps(spec.data, cls=encoder))
        spec_of_row.extend([number] * len(set(spec.user_ids)))
    now = timezone.now()
    for row in rows:
        row.created_at = now
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_SQL, [types, blobs, now, [r.user_id for r in rows], [r.seq for r in rows], spec_of_row]
        )


# Lock the heads in ascending user id order (the materialized CTE takes every lock, in order,
# before or as the UPDATE reaches a row), then advance them: one round trip instead of a
# SELECT ... FOR UPDATE and an UPDATE. Returns each head as it was before.
_ADVANCE_SQL = """
WITH locked AS MATERIALIZED (
    SELECT user_id FROM core_userstream WHERE user_id = ANY(%s) ORDER BY user_id FOR UPDATE
)
UPDATE core_userstream AS s SET last_seq = s.last_seq + v.n
  FROM unnest(%s::bigint[], %s::bigint[]) AS v(user_id, n)
 WHERE s.user_id = v.user_id AND s.user_id IN (SELECT user_id FROM locked)
RETURNING s.user_id, s.last_seq - v.n
"""


def _advance_heads(counts: dict[int, int]) -> dict[int, int]:
    """PostgreSQL: lock (in id order) and advance the heads in one statement; ``{user_id: old}``."""
    ids = sorted(counts)

    def advance(user_ids: list[int]) -> dict[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(_ADVANCE_SQL, [user_ids, user_ids, [counts[u] for u in user_ids]])
            return dict(cursor.fetchall())

    heads = advance(ids)
    missing = [uid for uid in ids if uid not in heads]
    if missing:  # a user's first event ever: make the head, then advance it
        UserStream.objects.bulk_create([UserStream(user_id=uid) for uid in missing], ignore_conflicts=True)
        heads.update(advance(missing))
    return heads


def _lock_heads(user_ids: list[int]) -> dict[int, int]:
    """Lock the stream heads of ``user_ids`` (sorted) and return ``{user_id: last_seq}``."""
    heads = dict(
        UserStream.objects.select_for_update()
        .filter(user_id__in=user_ids)
        .order_by("user_id")
        .values_list("user_id", "last_seq")
    )
    missing = [uid for uid in user_ids if uid not in heads]
    if missing:
        UserStream.objects.bulk_create([UserStream(user_id=uid) for uid in missing], ignore_conflicts=True)
        heads = dict(
            UserStream.objects.select_for_update()
            .filter(user_id__in=user_ids)
            .order_by("user_id")
            .values_list("user_id", "last_seq")
        )
    return heads


def _doorbell(rows: list[Event]) -> Callable[[], None]:
    envelopes = [(row.user_id, row.envelope()) for row in rows]

    def ring() -> None:
        push_envelopes(envelopes)

    return ring


def push_envelopes(envelopes: list[tuple[int, dict[str, Any]]]) -> None:
    """Send stored envelopes to the users' connected devices (best effort, never raises)."""
    layer = get_channel_layer()
    if layer is None:
        return

    async def send_one(user_id: int, envelope: dict[str, Any]) -> None:
        try:
            await layer.group_send(user_group(user_id), {"type": "event.push", "event": envelope})
        except Exception:  # the stored event is what counts; devices will sync
            logger.warning("event push failed for user %s", user_id, exc_info=True)

    async def send_all() -> None:
        # A few at a time: each group_send is several Redis round trips, and a group message
        # rings hundreds of users. Each user's envelopes keep their order (the frames a device
        # gets carry consecutive cursors): one user's are sent one after another in one task.
        by_user: dict[int, list[dict[str, Any]]] = {}
        for user_id, envelope in envelopes:
            by_user.setdefault(user_id, []).append(envelope)
        queue = list(by_user.items())

        async def worker() -> None:
            while queue:
                user_id, items = queue.pop()
                for envelope in items:
                    await send_one(user_id, envelope)

        await asyncio.gather(*(worker() for _ in range(min(PUSH_CONCURRENCY, len(queue)))))

    async_to_sync(send_all)()


def send_to_session(session_id: Any, message: dict[str, Any]) -> None:
    """Send a control message to the sockets of one login session (after commit)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(session_group(session_id), message)
    except Exception:
        logger.warning("control message to session %s failed", session_id, exc_info=True)


class CursorExpired(ApplicationError):
    status_code = 410
    default_code = "cursor_expired"
    default_message = _("The cursor is older than the kept events: reload, then sync from the latest cursor.")


def current_cursor(*, user_id: int) -> int:
    """The user's latest cursor (0 when nothing was ever published to them)."""
    return UserStream.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first() or 0


def events_since(*, user_id: int, since: int, limit: int = 100) -> dict[str, Any]:
    """Events of one user with ``seq > since``, oldest first, at most ``limit``.

    Returns ``{"events": [envelope, ...], "cursor": last returned or since, "has_more": bool,
    "latest": the user's newest cursor}``. Raises :class:`CursorExpired` when events after
    ``since`` were already purged (the client must reload its state).
    """
    limit = max(1, min(limit, settings.SYNC_PAGE_MAX))
    # Read the head first: every event up to it is committed (heads and events commit together,
    # and one user's numbers commit in order), so the rows read next must start at since + 1.
    latest = current_cursor(user_id=user_id)
    if since > latest:
        raise ValidationFailed(
            _("The cursor is ahead of the stream."),
            code="cursor_invalid",
            fields={"since": [str(_("Larger than the latest cursor."))]},
        )
    rows = list(
        Event.objects.filter(user_id=user_id, seq__gt=since)
        .order_by("seq")
        .values_list("seq", "type", "data")[: limit + 1]
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    if (rows and rows[0][0] != since + 1) or (not rows and since < latest):
        raise CursorExpired()
    if rows:
        latest = max(latest, rows[-1][0])
    return {
        "events": [{"type": t, "cursor": s, "data": d} for s, t, d in rows],
        "cursor": rows[-1][0] if rows else since,
        "has_more": has_more,
        "latest": latest,
    }


def redact(
    *,
    user_ids: Iterable[int],
    type: str,
    since: datetime,
    match: dict[str, Any],
    rewrite: Callable[[dict[str, Any]], dict[str, Any]],
) -> int:
    """Rewrite stored events in place: the one exception to "immutable once written".

    For content its author took back (a recalled message): the events of ``type`` in the streams
    of ``user_ids``, written at or after ``since``, whose data contains ``match`` (JSON
    containment, nested dicts allowed), get ``rewrite(data)``. Their cursors do not change and
    no new event is sent: clients learn of the change by their own event (e.g.
    ``message.recalled``), and a device that syncs later never receives the original. Matrix
    does the same with redactions. Call it inside the transaction that makes the change.
    """
    rows = Event.objects.filter(user_id__in=list(user_ids), type=type, created_at__gte=since)
    if connection.vendor == "postgresql":
        rows = rows.filter(data__contains=match)  # jsonb @>; SQLite has no containment: below
    changed = []
    for event in rows.only("id", "data"):
        if _contains(event.data, match):
            event.data = rewrite(event.data)
            changed.append(event)
    Event.objects.bulk_update(changed, ["data"], batch_size=500)
    return len(changed)


def _contains(data: Any, match: Any) -> bool:
    if isinstance(match, dict):
        return isinstance(data, dict) and all(k in data and _contains(data[k], v) for k, v in match.items())
    return data == match


def purge_events_older_than(*, days: int) -> int:
    """Delete stored events older than ``days``; returns how many. Heads are kept."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted
