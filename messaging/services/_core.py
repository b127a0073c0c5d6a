"""Building blocks of the write path shared by messages and groups (not a public interface).

Lock order, everywhere in messaging: conversation rows (ascending id, one query), then the
recipients' event-stream heads (``superapp.core.events.publish*``, ascending id). Nothing here
commits or sends: the caller is a public service inside ``transaction.atomic``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models.base import ModelState
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import selectors as account_selectors
from superapp.core import events as core_events
from superapp.core.errors import NotFound
from superapp.core.prepared import PreparedStatement, execute_bound

from .. import content, events, selectors
from ..models import Conversation, Member, Message


@dataclass
class Roster:
    """A locked conversation and its active members (``{user_id: Member}``)."""

    conversation: Conversation
    members: dict[int, Member]

    @property
    def user_ids(self) -> list[int]:
        return sorted(self.members)

    def member(self, user_id: int) -> Member:
        """The active membership of ``user_id`` or 404 (a non-member learns nothing)."""
        found = self.members.get(user_id)
        if found is None:
            raise NotFound(_("No such conversation."), code="conversation_not_found")
        return found


def lock_conversations(ids: Iterable[int]) -> dict[int, Conversation]:
    """Lock conversation rows in ascending id order (one query; on PostgreSQL a plain statement:
    the ORM's query building cost more than the query for a batch of sends)."""
    return lock_conversations_later(ids)()


def lock_conversations_later(ids: Iterable[int]) -> Callable[[], dict[int, Conversation]]:
    """:func:`lock_conversations` in two halves, for ``prepared.pipeline()``: the statement is
    executed now, the function returned reads the rows (call it after the block)."""
    wanted = sorted(set(ids))
    if connection.vendor != "postgresql":
        found = {
            c.pk: c for c in Conversation.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
        }
        return lambda: found
    cursor = connection.cursor()  # open until read
    result = execute_bound(cursor, _LOCK_SQL, [wanted])

    def read() -> dict[int, Conversation]:
        try:
            rows = result.fetchall()
        finally:
            cursor.close()
        return {row[0]: Conversation.from_db(connection.alias, None, list(row)) for row in rows}

    return read


_ROSTER_FIELDS = (
    "id",
    "conversation_id",
    "user_id",
    "role",
    "joined_seq",
    "last_read_seq",
    "muted",
    "nickname",
)


def active_members(conversation_ids: Iterable[int]) -> dict[int, dict[int, Member]]:
    """``{conversation_id: {user_id: Member}}`` of the active members (one query).

    The members are real ``Member`` instances with only ``_ROSTER_FIELDS`` loaded (as with
    ``.only()``: another field is fetched when read), built from value tuples without
    ``Model.__init__``, which cost ~30 us a row: 15 ms of CPU for each message to a 500-member
    group, more than the SQL."""
    return active_members_later(conversation_ids)()


def active_members_later(conversation_ids: Iterable[int]) -> Callable[[], dict[int, dict[int, Member]]]:
    """:func:`active_members` in two halves, for ``prepared.pipeline()``: the query is executed
    now, the function returned reads it (call it after the block)."""
    if connection.vendor != "postgresql":
        rows = Member.objects.filter(
            conversation_id__in=list(conversation_ids), left_at__isnull=True
        ).values_list(*_ROSTER_FIELDS)
        found = _members_of(list(rows), rows.db)
        return lambda: found
    cursor = connection.cursor()  # a plain statement (the ORM's building cost more); open until read
    result = execute_bound(cursor, _MEMBERS_SQL, [sorted(set(conversation_ids))])

    def read() -> dict[int, dict[int, Member]]:
        try:
            rows = result.fetchall()
        finally:
            cursor.close()
        return _members_of(rows, connection.alias)

    return read


def _members_of(rows: Sequence[Sequence[Any]], db: str) -> dict[int, dict[int, Member]]:
    out: dict[int, dict[int, Member]] = {}
    new = Member.__new__
    for row in rows:
        m = new(Member)
        m.__dict__.update(zip(_ROSTER_FIELDS, row, strict=True))
        state = m._state = ModelState()
        state.adding, state.db = False, db
        out.setdefault(row[1], {})[row[2]] = m
    return out


def roster(conversation_id: int, *, user_id: int) -> Roster:
    """Lock one conversation and load its active members; 404 unless ``user_id`` is one of them."""
    conv = lock_conversations([conversation_id]).get(conversation_id)
    if conv is None:
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    result = Roster(conv, active_members([conv.pk]).get(conv.pk, {}))
    result.member(user_id)
    return result


# The conversation's columns are named, not ``*``: a prepared statement whose result columns
# change (a column added by a migration) fails with 0A000 "cached plan must not change result
# type" until it is prepared again.
_CONVERSATION_COLUMNS = ", ".join(f'"{field.column}"' for field in Conversation._meta.concrete_fields)
_LOCK_SQL = f"SELECT {_CONVERSATION_COLUMNS} FROM messaging_conversation WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"  # noqa: S608 (the model's own columns)
_MEMBERS_SQL = (
    f"SELECT {', '.join(Member._meta.get_field(f).column for f in _ROSTER_FIELDS)} FROM messaging_member"  # noqa: S608
    " WHERE conversation_id = ANY(%s::bigint[]) AND left_at IS NULL"
)
_CLAIM_SQL = f"""
WITH conv AS (
    UPDATE messaging_conversation
       SET last_seq = last_seq + 1, last_message_at = %(now)s
     WHERE id = %(conversation_id)s
       AND EXISTS (SELECT 1 FROM messaging_member
                    WHERE conversation_id = %(conversation_id)s AND user_id = %(reader_id)s AND left_at IS NULL)
 RETURNING {_CONVERSATION_COLUMNS}
), mark AS (
    UPDATE messaging_member m SET last_read_seq = conv.last_seq
      FROM conv WHERE m.conversation_id = conv.id AND m.user_id = %(reader_id)s
)
SELECT {_CONVERSATION_COLUMNS} FROM conv
"""  # noqa: S608 (the model's own column names)
_CLAIM = PreparedStatement("messaging_claim", _CLAIM_SQL)


def claim_seq(conversation_id: int, *, reader_id: int) -> Conversation:
    """Lock the conversation and take its next sequence number, as a member, in one statement.

    The send path's fast lane (PostgreSQL): ``UPDATE ... RETURNING`` locks the row and bumps
    ``last_seq`` only when ``reader_id`` is an active member, and moves that member's read mark to
    the new number (the sender has read their own message). Returns the conversation as updated:
    ``last_seq`` is the number to use. 404 when not a member. Elsewhere: the ORM, in 3 queries.
    The caller's transaction rolls all of it back if the send fails later.
    """
    now = timezone.now()
    if connection.vendor == "postgresql":
        # A plain cursor, not Model.objects.raw(): RawQuerySet's column-to-field mapping cost
        # more CPU than the statement.
        with connection.cursor() as cursor:
            _CLAIM.execute(cursor, {"now": now, "conversation_id": conversation_id, "reader_id": reader_id})
            row = cursor.fetchone()
        if row is None:
            raise NotFound(_("No such conversation."), code="conversation_not_found")
        return Conversation.from_db(connection.alias, None, list(row))
    conv = lock_conversations([conversation_id]).get(conversation_id)
    if (
        conv is None
        or not Member.objects.filter(conversation=conv, user_id=reader_id, left_at__isnull=True).exists()
    ):
        raise NotFound(_("No such conversation."), code="conversation_not_found")
    conv.last_seq += 1
    conv.last_message_at = now
    conv.save(update_fields=["last_seq", "last_message_at"])
    Member.objects.filter(conversation=conv, user_id=reader_id).update(last_read_seq=conv.last_seq)
    return conv


def direct_roster(conv: Conversation) -> Roster:
    """The two members of a direct chat, without a query (they never leave)."""
    members = {
        uid: Member(conversation_id=conv.pk, user_id=uid, role=Member.Role.MEMBER, joined_seq=0)
        for uid in (conv.user_low_id, conv.user_high_id)
    }
    return Roster(conv, members)  # type: ignore[arg-type]


# A direct message needs friends (or a peer who accepts strangers), and no block either way.
check_direct_allowed = selectors.direct_message_check


def check_can_post(r: Roster, *, sender_id: int) -> Member:
    member = r.member(sender_id)
    conv = r.conversation
    if conv.kind == Conversation.Kind.DIRECT:
        peer = conv.user_high_id if conv.user_low_id == sender_id else conv.user_low_id
        check_direct_allowed(sender_id=sender_id, peer_id=peer)
    return member


# The message row, with its full-text document (``to_tsvector`` of ``content.search_document``;
# NULL without text), prepared once per connection: the ORM's INSERT cost 0.45 ms of Python a message
# building and compiling the query and the model (BENCHMARKS.md "Messaging").
_INSERT_SQL = """
INSERT INTO messaging_message
    (conversation_id, seq, sender_id, client_msg_id, kind, text, content, reply_to_id, mentions,
     mention_all, forwarded, created_at, search)
VALUES (%(conversation_id)s, %(seq)s, %(sender_id)s, %(client_msg_id)s, %(kind)s, %(text)s,
        %(content)s::jsonb, %(reply_to_id)s, %(mentions)s::jsonb, %(mention_all)s, %(forwarded)s,
        %(created_at)s, to_tsvector('simple'::regconfig, %(document)s::text))
RETURNING id
"""
_INSERT = PreparedStatement("messaging_insert", _INSERT_SQL)
_MESSAGE_FIELDS = Message._meta.concrete_fields


def _insert_postgresql(
    *,
    conv: Conversation,
    seq: int,
    sender_id: int | None,
    client_msg_id: str | None,
    kind: str,
    text: str,
    body: dict[str, Any],
    reply_to: Message | None,
    mentions: list[int],
    mention_all: bool,
    forwarded: bool,
    now: Any,
) -> Message:
    """``Message.objects.create(...)`` in one prepared statement; the same row and instance
    (``search`` not kept on the instance: nothing reads it back)."""
    with connection.cursor() as cursor:
        _INSERT.execute(
            cursor,
            {
                "conversation_id": conv.pk,
                "seq": seq,
                "sender_id": sender_id,
                "client_msg_id": client_msg_id,
                "kind": kind,
                "text": text,
                "content": json.dumps(body),
                "reply_to_id": reply_to.pk if reply_to is not None else None,
                "mentions": json.dumps(mentions),
                "mention_all": mention_all,
                "forwarded": forwarded,
                "created_at": now,
                "document": content.search_document(text) if text else None,
            },
        )
        (message_id,) = cursor.fetchone()
    values = {
        "id": message_id, "conversation_id": conv.pk, "seq": seq, "sender_id": sender_id,
        "client_msg_id": client_msg_id, "kind": kind, "text": text, "content": body,
        "reply_to_id": reply_to.pk if reply_to is not None else None, "mentions": mentions,
        "mention_all": mention_all, "forwarded": forwarded, "created_at": now,
    }  # fmt: skip
    # Every other field (recalled_at, recalled_by, search...) as a new row has it: its default.
    msg = Message.from_db(
        connection.alias,
        None,
        [values[f.attname] if f.attname in values else f.get_default() for f in _MESSAGE_FIELDS],
    )
    msg.conversation = conv
    if reply_to is not None:
        msg.reply_to = reply_to
    return msg


# A batch's numbers, its senders' read marks and its rows, in one statement (data-modifying CTEs
# all run, whatever the final SELECT reads). The rows' ids were taken beforehand
# (``_NEXT_IDS_SQL``), so that their events can be written before this statement has answered.
_APPEND_MANY_SQL = """
WITH numbers AS (
    UPDATE messaging_conversation c SET last_seq = v.last_seq, last_message_at = %(now)s
      FROM unnest(%(ids)s::bigint[], %(last_seqs)s::bigint[]) AS v(id, last_seq)
     WHERE c.id = v.id
), marks AS (
    UPDATE messaging_member m SET last_read_seq = GREATEST(m.last_read_seq, v.seq)
      FROM unnest(%(member_ids)s::bigint[], %(member_seqs)s::bigint[]) AS v(id, seq)
     WHERE m.id = v.id
)
INSERT INTO messaging_message
    (id, conversation_id, seq, sender_id, client_msg_id, kind, text, content, reply_to_id, mentions,
     mention_all, forwarded, created_at, search)
SELECT v.id, v.conversation_id, v.seq, v.sender_id, v.client_msg_id, v.kind, v.text, v.content::jsonb,
       NULL, '[]'::jsonb, false, false, %(now)s, to_tsvector('simple'::regconfig, v.document)
  FROM unnest(%(message_ids)s::bigint[], %(conversation_ids)s::bigint[], %(seqs)s::bigint[],
              %(sender_ids)s::bigint[], %(client_msg_ids)s::text[], %(kinds)s::text[], %(texts)s::text[],
              %(contents)s::text[], %(documents)s::text[])
       AS v(id, conversation_id, seq, sender_id, client_msg_id, kind, text, content, document)
"""
# n new message ids (the column's identity sequence; an id taken and not used is a harmless gap).
_NEXT_IDS_SQL = (
    f"SELECT nextval(pg_get_serial_sequence('{Message._meta.db_table}', 'id')) FROM generate_series(1, %s)"  # noqa: S608
)

# What never changes about a conversation, as last seen by this process: its id -> the pair
# (user_low_id, user_high_id) of a direct chat, None for a group. Lets a batch ask for its direct
# peers' relations in the same round trip as the conversations' locks; each guess is checked
# against the locked row, and a wrong or missing one costs one more query, never a wrong answer
# (tests reuse ids across flushed databases).
_PAIRS: dict[int, tuple[int, int] | None] = {}
_PAIRS_MAX = 100_000


@dataclass(frozen=True)
class PlainMessage:
    """A message with no reply, mention, media or contact card, to an existing conversation."""

    conversation_id: int
    sender_id: int
    client_msg_id: str
    kind: str
    text: str
    body: dict[str, Any]


def _peer(pair: tuple[int, int] | None, sender_id: int) -> tuple[int, int] | None:
    """(sender, the other member) of a direct chat's pair, or None (a group, or not theirs)."""
    if pair is None or sender_id not in pair:
        return None
    return (sender_id, pair[1] if pair[0] == sender_id else pair[0])


class PlainBatch:
    """PostgreSQL: store many plain messages, in order, with a fixed number of round trips: what
    ``claim_seq``, ``check_can_post`` and ``append`` do for each, for a batch.

    1. ``PlainBatch(plain)``, inside the caller's ``prepared.pipeline()`` that also locks the
       conversations (``lock_conversations_later``, before this): the active members, the direct
       peers' relations (as this process last saw the chats), n new message ids;
    2. ``store(convs, skip)`` after that block, with the locked conversations: the checks (a
       message that would be refused, its sender not an active member, a direct peer who is not a
       friend, or blocked, or gone, is not stored: None in its place, for the caller to send on
       its own, whose path says why or allows a stranger where the peer accepts them), the
       numbers, then the one statement that moves the numbers and the senders' read marks and
       inserts the rows: executed, not read (inside the caller's next pipeline, with the events'
       publish). ``skip``: indexes of ``plain`` the caller takes out (retries).
    Publishing is the caller's.
    """

    def __init__(self, plain: Sequence[PlainMessage]) -> None:
        self.plain = list(plain)
        self._members = active_members_later({m.conversation_id for m in self.plain})
        guessed: dict[int, tuple[int, int]] = {}
        for n, m in enumerate(self.plain):
            # (.get: another batch thread may clear the cache meanwhile)
            if (pair := _peer(_PAIRS.get(m.conversation_id), m.sender_id)) is not None:
                guessed[n] = pair
        self._guessed = guessed
        self._relations = account_selectors.relation_flags_many_later(guessed.values())
        self._ids_cursor = connection.cursor()  # open until read
        self._ids = execute_bound(self._ids_cursor, _NEXT_IDS_SQL, [len(self.plain)])

    def store(self, convs: dict[int, Conversation], skip: set[int]) -> list[tuple[Roster, Message] | None]:
        try:
            new_ids = sorted(row[0] for row in self._ids.fetchall())
        finally:
            self._ids_cursor.close()
        members = self._members()
        flags = self._relations()
        if len(_PAIRS) > _PAIRS_MAX:
            _PAIRS.clear()
        for conv in convs.values():
            _PAIRS[conv.pk] = (
                (conv.user_low_id, conv.user_high_id) if conv.kind == Conversation.Kind.DIRECT else None
            )
        rosters = {conv_id: Roster(conv, members.get(conv_id, {})) for conv_id, conv in convs.items()}
        peer_of: dict[int, tuple[int, int]] = {}
        refused: set[int] = set(skip)
        for n, m in enumerate(self.plain):
            if n in skip:
                continue
            r = rosters.get(m.conversation_id)
            if r is None or m.sender_id not in r.members:
                refused.add(n)
                continue
            conv = r.conversation
            if conv.kind == Conversation.Kind.DIRECT:
                peer_of[n] = _peer((conv.user_low_id, conv.user_high_id), m.sender_id)  # type: ignore[assignment]
        unasked = [pair for n, pair in peer_of.items() if self._guessed.get(n) != pair]
        if unasked:  # a conversation this process had not seen yet (or guessed wrong)
            flags = {**flags, **account_selectors.relation_flags_many(unasked)}
        for n, pair in peer_of.items():
            found = flags.get(pair)
            if found is None or not found[0] or found[1]:  # gone, not friends, or a block: its own path
                refused.add(n)
        accepted = [(n, m) for n, m in enumerate(self.plain) if n not in refused]
        out: list[tuple[Roster, Message] | None] = [None] * len(self.plain)
        if not accepted:
            return out
        now = timezone.now()
        seqs: list[int] = []
        marks: dict[int, int] = {}  # member pk -> the sender's last new seq there
        for _n, m in accepted:
            r = rosters[m.conversation_id]
            r.conversation.last_seq += 1
            r.conversation.last_message_at = now
            seqs.append(r.conversation.last_seq)
            marks[r.members[m.sender_id].pk] = r.conversation.last_seq
        ids = new_ids[: len(accepted)]  # ascending, as the rows' seqs in each conversation
        touched = sorted({m.conversation_id for _n, m in accepted})
        with connection.cursor() as cursor:  # (closing before the pipeline's answer is fine)
            execute_bound(
                cursor,
                _APPEND_MANY_SQL,
                {
                    "now": now,
                    "ids": touched,
                    "last_seqs": [rosters[c].conversation.last_seq for c in touched],
                    "member_ids": list(marks),
                    "member_seqs": list(marks.values()),
                    "message_ids": ids,
                    "conversation_ids": [m.conversation_id for _n, m in accepted],
                    "seqs": seqs,
                    "sender_ids": [m.sender_id for _n, m in accepted],
                    "client_msg_ids": [m.client_msg_id for _n, m in accepted],
                    "kinds": [m.kind for _n, m in accepted],
                    "texts": [m.text for _n, m in accepted],
                    "contents": [json.dumps(m.body) for _n, m in accepted],
                    "documents": [content.search_document(m.text) if m.text else None for _n, m in accepted],
                },
            )
        by_pk = {member.pk: member for r in rosters.values() for member in r.members.values()}
        for pk, seq in marks.items():  # the rosters' members as the database will have them
            by_pk[pk].last_read_seq = max(by_pk[pk].last_read_seq, seq)
        for (n, m), seq, message_id in zip(accepted, seqs, ids, strict=True):
            r = rosters[m.conversation_id]
            values = {
                "id": message_id, "conversation_id": m.conversation_id, "seq": seq,
                "sender_id": m.sender_id, "client_msg_id": m.client_msg_id, "kind": m.kind, "text": m.text,
                "content": m.body, "reply_to_id": None, "mentions": [], "mention_all": False, "forwarded": False,
                "created_at": now,
            }  # fmt: skip
            msg = Message.from_db(
                connection.alias,
                None,
                [values[f.attname] if f.attname in values else f.get_default() for f in _MESSAGE_FIELDS],
            )
            msg.conversation = r.conversation
            out[n] = (r, msg)
        return out


def append(
    r: Roster,
    *,
    sender_id: int | None,
    kind: str,
    text: str = "",
    body: dict[str, Any] | None = None,
    client_msg_id: str | None = None,
    reply_to: Message | None = None,
    mentions: list[int] | None = None,
    mention_all: bool = False,
    forwarded: bool = False,
    reader_id: int | None = None,
    claimed: bool = False,
) -> Message:
    """Number and store one message in a locked conversation; move the reader's read mark.

    ``reader_id`` (the sender, or the actor of a system message) has read up to the new
    message, so that one's own messages are never unread. ``claimed``: the number was taken by
    :func:`claim_seq` already (``conversation.last_seq``, reader's mark moved). Publishing is
    the caller's.
    """
    conv = r.conversation
    now = timezone.now()
    if claimed:
        seq = conv.last_seq
        fields = []
    else:
        seq = conv.last_seq + 1
        conv.last_seq = seq
        conv.last_message_at = now
        fields = ["last_seq", "last_message_at"]
    if mention_all:
        conv.last_mention_all_seq = seq
        fields.append("last_mention_all_seq")
    if connection.vendor == "postgresql":
        msg = _insert_postgresql(
            conv=conv, seq=seq, sender_id=sender_id, client_msg_id=client_msg_id, kind=kind, text=text,
            body=body or {}, reply_to=reply_to, mentions=mentions or [], mention_all=mention_all,
            forwarded=forwarded, now=now,
        )  # fmt: skip
    else:
        msg = Message.objects.create(
            conversation=conv,
            seq=seq,
            sender_id=sender_id,
            client_msg_id=client_msg_id,
            kind=kind,
            text=text,
            content=body or {},
            reply_to=reply_to,
            mentions=mentions or [],
            mention_all=mention_all,
            forwarded=forwarded,
        )
    if fields:
        Conversation.objects.filter(pk=conv.pk).update(**{f: getattr(conv, f) for f in fields})
    # When claimed, claim_seq moved the reader's mark already.
    if not claimed and reader_id is not None and reader_id in r.members:
        Member.objects.filter(pk=r.members[reader_id].pk).update(last_read_seq=seq)
        r.members[reader_id].last_read_seq = seq
    if mentions:
        Member.objects.filter(conversation=conv, user_id__in=mentions).update(last_mention_seq=seq)
    return msg


def system_message(r: Roster, *, actor_id: int | None, event: str, **data: Any) -> Message:
    """A server-written line in the history ("X joined", "X renamed the group to ...")."""
    return append(
        r, sender_id=None, kind=Message.Kind.SYSTEM, body={"event": event, "actor_id": actor_id, **data},
        reader_id=actor_id,
    )  # fmt: skip


def new_message_spec(
    r: Roster, msg: Message, *, reply_to: Message | None = None, extra_ids=()
) -> core_events.EventSpec:
    return core_events.EventSpec(
        user_ids=sorted({*r.members, *extra_ids}),
        type=events.MESSAGE_NEW,
        data=events.message(msg, reply_to=reply_to),
    )


def bump_member_count(r: Roster) -> None:
    r.conversation.member_count = len(r.members)
    Conversation.objects.filter(pk=r.conversation.pk).update(member_count=len(r.members))


def group_limit() -> int:
    return settings.MESSAGING_GROUP_MAX_MEMBERS


def bump_read(member_pk: int, seq: int) -> int:
    """Move a read mark forward (never back); returns rows changed (0: already there)."""
    return Member.objects.filter(pk=member_pk, last_read_seq__lt=seq).update(last_read_seq=seq)
