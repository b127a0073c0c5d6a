"""Push notifications for members who are offline: when, to whom, and what they say.

1. After a send commits, :func:`schedule_on_commit` asks presence which recipients have no open
   socket (one pipelined Redis round trip) and, for each of them, claims a per-user window
   (``SET NX PX``) of ``MESSAGING_PUSH_WINDOW`` seconds. Recipients whose window was free are
   due when the window ends; the others already have a task coming, which will include this
   message too.
2. Due users are added to the *due set* of the current second (``push-due:<second>``, one Redis
   script call). Only the send that creates that set hands a Celery task
   (``messaging.push_flush``, with the set's name) to the broker, due when its window ends; the
   sends of the same second that find the set only add to it. A Celery enqueue costs ~1 ms of
   CPU (message, headers, ETA, a kombu client per publish): with this, a busy server pays it
   about once a second instead of once per send. Windows claimed later in that second thus end
   up to a second early, which only shortens their batching.
   The task drains the set (each user flushed, then removed, until it is empty): Redis deletes
   an empty set, so a user added after the drain finds no set and schedules a new task; a user
   added during it is seen by the next read. Nothing falls between the two.
3. The task (:func:`flush_user`) frees the window first (so a message committed after it looks
   starts a new one), skips users who came back online, and otherwise pushes one notification
   summing up the unread messages newer than the user's bookmark
   (``UserSettings.last_pushed_message_id``): muted conversations only when the user was
   mentioned, recalled and system messages never. Without "show preview" it says only how many
   messages there are: no text, no sender, no conversation name.
4. The bookmark moves forward after the push: a task run twice pushes at most twice, and both
   copies carry the same ``collapse_key``, so a device shows one.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Greatest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import presence, selectors
from .models import HiddenMessage, Member, Message, UserSettings

logger = logging.getLogger(__name__)

KIND_LABELS = {
    "image": "[Image]",
    "video": "[Video]",
    "voice": "[Voice]",
    "file": "[File]",
    "sticker": "[Sticker]",
    "location": "[Location]",
    "contact": "[Contact card]",
    "transfer": "[Transfer]",
    "red_packet": "[Red Packet]",
}
SCAN_LIMIT = 200


def _window_key(user_id: int) -> str:
    return f"push-window:{user_id}"


# Seconds per due set (see the module docstring); windows are longer than this.
DUE_SET_SECONDS = 1
# A due set whose task never ran (a lost broker message) is forgotten after this; the next
# message of each of its users claims a new window anyway.
DUE_SET_TTL_MS = 3_600_000
# A sorted set: each add bumps the user's score, so the drain removes a user only if nobody
# re-added them since it read the set (a newer window's add is never lost).
_ADD_DUE_LUA = """
local new = redis.call('EXISTS', KEYS[1]) == 0
for i = 2, #ARGV do redis.call('ZINCRBY', KEYS[1], 1, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if new then return 1 end
return 0
"""
_REMOVE_SEEN_LUA = """
for i = 1, #ARGV, 2 do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) == tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0
"""


@dataclass(frozen=True)
class _DueStore:
    client: Any
    prefix: str
    add: Any
    remove_seen: Any


@functools.cache
def _due_store() -> _DueStore | None:
    """Presence's Redis for the due sets; ``None`` without Redis (one process: a task per window)."""
    url = settings.MESSAGING_PRESENCE_REDIS_URL
    if not url:
        return None
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    # The cache's key prefix namespaces each deployment (and each test run), as presence does.
    return _DueStore(
        client=client,
        prefix=django_cache.make_key("messaging"),
        add=client.register_script(_ADD_DUE_LUA),
        remove_seen=client.register_script(_REMOVE_SEEN_LUA),
    )


def _due_key(prefix: str, second: int) -> str:
    return f"{prefix}:push-due:{second}"


def schedule_on_commit(*, sender_id: int, recipient_ids: list[int]) -> None:
    """After commit: start a push window for each offline recipient that has none running."""
    if not recipient_ids or not settings.MESSAGING_PUSH_ENABLED:
        return
    ids = sorted(set(recipient_ids))
    transaction.on_commit(lambda: _schedule(ids))


def _schedule(user_ids: list[int]) -> None:
    try:
        online = presence.online_ids(user_ids)
        offline = [uid for uid in user_ids if uid not in online]
        if not offline:
            return
        window = float(settings.MESSAGING_PUSH_WINDOW)
        claimed = presence.claim_windows([_window_key(u) for u in offline], window)
        due = [uid for uid, ok in zip(offline, claimed, strict=True) if ok]
        if due:
            _enqueue(due, window)
    except Exception:  # a push is a courtesy: never fail or slow down a committed send
        logger.warning("scheduling push notifications failed", exc_info=True)


def _enqueue(due: list[int], window: float) -> None:
    """Add ``due`` to this second's due set; the send that created the set schedules its task."""
    from .tasks import push_flush

    store = _due_store()
    if store is not None:
        key = _due_key(store.prefix, int(time.time()) // DUE_SET_SECONDS)
        try:
            created = store.add(keys=[key], args=[DUE_SET_TTL_MS, *due])
        except Exception:  # the set is out of reach: a task of our own, as without Redis
            logger.warning("adding to the push due set failed", exc_info=True)
        else:
            if created:
                try:
                    push_flush.apply_async(kwargs={"user_ids": due, "due_set": key}, countdown=window)
                except Exception:
                    # No task will drain this set: drop it, so that the next send of this second
                    # creates it again and schedules one (instead of every later add trusting it).
                    store.client.delete(key)
                    raise
            return
    push_flush.apply_async(kwargs={"user_ids": due}, countdown=window)


def flush_due(user_ids: list[int], due_set: str | None) -> int:
    """The task's work: flush ``user_ids``, then each user of ``due_set`` until the set is empty.

    Without a due set (a task of its own) the users are also taken out of the recent due sets.
    In a due set a user is removed only after their flush and only if not re-added meanwhile,
    so a task that dies midway is redelivered (``acks_late``) and resumes, and a user re-added
    during the drain is flushed again. One user's failure does not cost the others their push."""
    store = _due_store() if due_set else None
    pushed = 0
    todo = list(dict.fromkeys(user_ids))
    seen: list[tuple[bytes, float]] = []
    while True:
        if store is not None:
            seen = store.client.zrange(due_set, 0, -1, withscores=True)
            todo = list(dict.fromkeys([*todo, *(int(member) for member, _score in seen)]))
        for user_id in todo:
            try:
                pushed += flush_user(user_id, forget_due=store is None)
            except Exception:
                logger.exception("push flush failed for user %s", user_id)
        if store is None or not seen:
            return pushed
        store.remove_seen(keys=[due_set], args=[x for member, score in seen for x in (member, int(score))])
        todo = []


@dataclass(frozen=True)
class Pending:
    message_id: int
    conversation_id: int
    conversation_name: str
    is_group: bool
    sender_name: str
    kind: str
    text: str


def pending_for(user_id: int) -> tuple[list[Pending], int]:
    """Unread messages newer than the user's push bookmark, newest first, and the newest id; not
    those the user deleted for themselves (from another device) meanwhile."""
    bookmark = (
        UserSettings.objects.filter(user_id=user_id).values_list("last_pushed_message_id", flat=True).first()
        or 0
    )
    rows = (
        Message.objects.filter(
            conversation__members__user_id=user_id,
            conversation__members__left_at__isnull=True,
            seq__gt=F("conversation__members__last_read_seq"),
            id__gt=bookmark,
            recalled_at__isnull=True,
            sender__isnull=False,
        )
        .exclude(sender_id=user_id)
        .exclude(Exists(HiddenMessage.objects.filter(user_id=user_id, message_id=OuterRef("pk"))))
        .annotate(_muted=F("conversation__members__muted"))
        .select_related("sender", "conversation")
        .order_by("-id")[:SCAN_LIMIT]
    )
    out: list[Pending] = []
    newest = bookmark
    for m in rows:
        newest = max(newest, m.id)
        if m._muted and not (m.mention_all or user_id in (m.mentions or [])):
            continue
        conv = m.conversation
        out.append(
            Pending(
                message_id=m.id,
                conversation_id=conv.pk,
                conversation_name=conv.name,
                is_group=conv.kind == "group",
                sender_name=m.sender.display_name or m.sender.handle,
                kind=m.kind,
                text=m.text,
            )
        )
    return out, newest


def badge_for(user_id: int) -> int:
    """Unread messages over the user's unmuted conversations (the app icon's number), counted as
    the conversation list counts them (``selectors.unread``). Two queries."""
    behind = list(
        Member.objects.filter(
            user_id=user_id, left_at__isnull=True, muted=False, conversation__last_seq__gt=F("last_read_seq")
        ).select_related("conversation")
    )
    hidden = selectors.hidden_unread(behind, user_id=user_id)
    for m in behind:
        m.hidden_unread = hidden.get(m.conversation_id, 0)  # type: ignore[attr-defined]
    return sum(selectors.unread(m) for m in behind)


def build(pending: list[Pending], *, show_preview: bool, badge: int) -> dict[str, Any]:
    """The notification's fields (``superapp.core.push.Notification`` keyword arguments)."""
    count = len(pending)
    conversations = {p.conversation_id for p in pending}
    data = {"type": "messages", "count": str(count)}
    if len(conversations) == 1:
        data["conversation_id"] = str(next(iter(conversations)))
    app = settings.MESSAGING_PUSH_APP_NAME
    if not show_preview:
        body = ngettext("You have %(n)d new message.", "You have %(n)d new messages.", count) % {"n": count}
        return {"title": app, "body": body, "data": data, "badge": badge}
    last = pending[0]
    line = last.text if last.kind in ("text", "system") else KIND_LABELS.get(last.kind, "")
    if last.is_group:
        line = f"{last.sender_name}: {line}"
    if len(conversations) > 1:
        title = app
        body = ngettext("%(n)d new message in %(c)d chats", "%(n)d new messages in %(c)d chats", count) % {
            "n": count,
            "c": len(conversations),
        }
        body = f"{body}\n{line}"
    else:
        title = last.conversation_name if last.is_group else last.sender_name
        body = line if count == 1 else _("[%(n)d messages] %(line)s") % {"n": count, "line": line}
    return {"title": title or app, "body": body, "data": data, "badge": badge}


def deliver(*, user_id: int, fields: dict[str, Any]) -> None:
    """Hand one notification to the push plumbing (``superapp.core.push``)."""
    from superapp.core import push

    push.notify_users(
        user_ids=[user_id],
        notification=push.Notification(collapse_key=f"messages-{user_id}", **fields),
    )


def flush_user(user_id: int, *, forget_due: bool = True) -> bool:
    """Push one summary to an offline user; True when something was pushed. Outside a transaction."""
    if forget_due:  # before the window is freed: while it is held, nobody re-adds the user
        _forget_due(user_id)
    presence.release_windows([_window_key(user_id)])
    pending, newest = pending_for(user_id)
    if pending and not presence.online_ids([user_id]):
        prefs = UserSettings.objects.filter(user_id=user_id).values_list("show_preview", flat=True).first()
        show_preview = True if prefs is None else prefs
        deliver(user_id=user_id, fields=build(pending, show_preview=show_preview, badge=badge_for(user_id)))
        pushed = True
    else:
        pushed = False
    if newest:
        _advance_bookmark(user_id, newest)
    return pushed


def _forget_due(user_id: int) -> None:
    """Take the user out of the due sets of the last window's seconds: this flush covers them.

    For a task of its own (no due set to drain): it spares the due set's task a flush with
    nothing new, and lets the user's next window schedule a task of its own."""
    store = _due_store()
    if store is None:
        return
    now = int(time.time()) // DUE_SET_SECONDS
    back = int(float(settings.MESSAGING_PUSH_WINDOW) // DUE_SET_SECONDS) + 2
    pipe = store.client.pipeline(transaction=False)
    for second in range(now - back, now + 2):
        pipe.zrem(_due_key(store.prefix, second), user_id)
    pipe.execute()


def _advance_bookmark(user_id: int, newest: int) -> None:
    updated = UserSettings.objects.filter(user_id=user_id).update(
        last_pushed_message_id=Greatest(F("last_pushed_message_id"), newest)
    )
    if not updated:
        UserSettings.objects.get_or_create(user_id=user_id, defaults={"last_pushed_message_id": newest})
