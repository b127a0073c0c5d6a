"""Reads of the accounts app (its public read interface for other apps)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from superapp.core.errors import NotFound
from superapp.core.prepared import PreparedStatement, execute_bound

from .events import user_brief, user_public  # noqa: F401  (payload shapes other apps render)
from .identifiers import classify_login
from .models import Block, ContactTag, FriendRequest, Friendship, LoginSession, User


def user_get(*, user_id: int) -> User:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise NotFound()
    return user


def blocked_either_way_ids(*, user_id: int) -> set[int]:
    """Users that ``user_id`` blocked or that blocked ``user_id``."""
    rows = Block.objects.filter(Q(blocker_id=user_id) | Q(blocked_id=user_id)).values_list(
        "blocker_id", "blocked_id"
    )
    return {b if a == user_id else a for a, b in rows}


def is_blocked_between(*, user_a: int, user_b: int) -> bool:
    return Block.objects.filter(
        Q(blocker_id=user_a, blocked_id=user_b) | Q(blocker_id=user_b, blocked_id=user_a)
    ).exists()


def has_blocked(*, blocker_id: int, blocked_id: int) -> bool:
    return Block.objects.filter(blocker_id=blocker_id, blocked_id=blocked_id).exists()


def _unblocked(qs: QuerySet[Friendship], user_id: int) -> QuerySet[Friendship]:
    block = Block.objects.filter(
        Q(blocker_id=user_id, blocked_id=OuterRef("friend_id"))
        | Q(blocker_id=OuterRef("friend_id"), blocked_id=user_id)
    )
    return qs.filter(~Exists(block))


def friend_ids(*, user_id: int) -> set[int]:
    """Ids of ``user_id``'s friends, leaving out any pair with a block either way."""
    return set(
        _unblocked(Friendship.objects.filter(user_id=user_id), user_id).values_list("friend_id", flat=True)
    )


def friend_ids_query(*, user_id: int) -> QuerySet[Friendship]:
    """``friend_ids`` as an unevaluated query of ``friend_id`` values, to use inside another query
    (``author_id__in=friend_ids_query(user_id=v)``) so that a read stays one SQL statement."""
    return _unblocked(Friendship.objects.filter(user_id=user_id), user_id).values("friend_id")


def are_friends(*, user_a: int, user_b: int) -> bool:
    """Friends, and no block either way."""
    if user_a == user_b:
        return False
    return _unblocked(Friendship.objects.filter(user_id=user_a, friend_id=user_b), user_a).exists()


# Table names come from the models (no input reaches the SQL text); values are parameters.
_RELATION_SQL = (
    f"SELECT EXISTS (SELECT 1 FROM {Friendship._meta.db_table} WHERE user_id = %s AND friend_id = %s),"  # noqa: S608
    f" EXISTS (SELECT 1 FROM {Block._meta.db_table}"
    f" WHERE (blocker_id = %s AND blocked_id = %s) OR (blocker_id = %s AND blocked_id = %s))"
    f" FROM {User._meta.db_table} WHERE id = %s AND is_active AND is_verified"
)
_RELATION = PreparedStatement("accounts_relation", _RELATION_SQL)


def relation_flags(*, user_id: int, other_id: int) -> tuple[bool, bool] | None:
    """``(friends, blocked_either_way)`` between two users, in one query; ``None`` when
    ``other_id`` is not an active, verified user. ``friends`` ignores blocks (check both).

    Messaging checks this on every direct message, so it is one plain statement: the same read
    through the ORM (a queryset annotated with two ``Exists``) cost a sixth of the send path's
    CPU in bench/messaging_chat.py, most of it compiling the query.
    """
    with connection.cursor() as cursor:
        _RELATION.execute(cursor, [user_id, other_id, user_id, other_id, other_id, user_id, other_id])
        row = cursor.fetchone()
    return (bool(row[0]), bool(row[1])) if row else None


def relation_flags_many(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], tuple[bool, bool] | None]:
    """:func:`relation_flags` for many ``(user_id, other_id)`` pairs in one query (PostgreSQL)."""
    return relation_flags_many_later(pairs)()


def relation_flags_many_later(
    pairs: Iterable[tuple[int, int]],
) -> Callable[[], dict[tuple[int, int], tuple[bool, bool] | None]]:
    """:func:`relation_flags_many` in two halves, for ``superapp.core.prepared.pipeline()``: the
    query is executed now, the function returned reads its answer (call it after the block)."""
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return dict
    cursor = connection.cursor()  # open until read
    bound = execute_bound(cursor, _RELATION_MANY_SQL, [[p[0] for p in pairs], [p[1] for p in pairs]])

    def read() -> dict[tuple[int, int], tuple[bool, bool] | None]:
        try:
            found = {(row[0], row[1]): (bool(row[2]), bool(row[3])) for row in bound.fetchall()}
        finally:
            cursor.close()
        return {pair: found.get(pair) for pair in pairs}

    return read


_RELATION_MANY_SQL = (  # the models' own table names
    "SELECT p.user_id, p.other_id,"  # noqa: S608
    f" EXISTS (SELECT 1 FROM {Friendship._meta.db_table} f WHERE f.user_id = p.user_id AND f.friend_id = p.other_id),"
    f" EXISTS (SELECT 1 FROM {Block._meta.db_table} b WHERE (b.blocker_id = p.user_id AND b.blocked_id = p.other_id)"
    " OR (b.blocker_id = p.other_id AND b.blocked_id = p.user_id))"
    " FROM unnest(%s::bigint[], %s::bigint[]) AS p(user_id, other_id)"
    f" JOIN {User._meta.db_table} u ON u.id = p.other_id AND u.is_active AND u.is_verified"
)


def is_contact(*, user_id: int, other_id: int) -> bool:
    """A friendship row exists (even if one of them blocked the other)."""
    return Friendship.objects.filter(user_id=user_id, friend_id=other_id).exists()


def tag_member_ids(*, owner_id: int, tag_ids: Iterable[int]) -> set[int]:
    """Members of the owner's tags (unknown or foreign tag ids contribute nothing).

    A member in a block with the owner (either way) is left out, like every friend selector: a
    block keeps the tag membership (for after an unblock) but must not let Moments reach them.
    """
    tag_ids = list(tag_ids)
    if not tag_ids:
        return set()
    through = ContactTag.members.through
    block = Block.objects.filter(
        Q(blocker_id=owner_id, blocked_id=OuterRef("user_id"))
        | Q(blocker_id=OuterRef("user_id"), blocked_id=owner_id)
    )
    return set(
        through.objects.filter(contacttag__owner_id=owner_id, contacttag_id__in=tag_ids)
        .filter(~Exists(block))
        .values_list("user_id", flat=True)
    )


def profile_visible(*, viewer: User, target: User) -> bool:
    """Whether ``viewer`` may see ``target``'s profile by id: self, a contact entry either way,
    or a pending friend request either way; never when ``target`` blocked ``viewer``."""
    if viewer.pk == target.pk:
        return True
    if not target.is_verified or has_blocked(blocker_id=target.pk, blocked_id=viewer.pk):
        return False
    pair = Q(user_id=viewer.pk, friend_id=target.pk) | Q(user_id=target.pk, friend_id=viewer.pk)
    pending = Q(from_user_id=viewer.pk, to_user_id=target.pk) | Q(
        from_user_id=target.pk, to_user_id=viewer.pk
    )
    return (
        Friendship.objects.filter(pair).exists()
        or FriendRequest.objects.filter(pending, status=FriendRequest.Status.PENDING).exists()
    )


def friendship_list(*, user: User) -> QuerySet[Friendship]:
    """The user's contact list with each friend and their tags (3 queries whatever the size)."""
    tags = ContactTag.objects.filter(owner=user).only("id", "name")
    return (
        Friendship.objects.filter(user=user)
        .select_related("friend")
        .prefetch_related(Prefetch("friend__tagged_in", queryset=tags, to_attr="my_tags"))
    )


def friendship_get(*, user: User, friend_id: int) -> Friendship:
    friendship = friendship_list(user=user).filter(friend_id=friend_id).first()
    if friendship is None:
        raise NotFound()
    return friendship


def friend_request_list(*, user: User, direction: str) -> QuerySet[FriendRequest]:
    qs = FriendRequest.objects.select_related("from_user", "to_user")
    if direction == "outgoing":
        return qs.filter(from_user=user)
    return qs.filter(to_user=user).exclude(
        from_user_id__in=Block.objects.filter(blocker=user).values("blocked_id")
    )


def tag_list(*, owner: User) -> QuerySet[ContactTag]:
    return ContactTag.objects.filter(owner=owner).prefetch_related(
        Prefetch("members", queryset=User.objects.only("id"))
    )


def block_list(*, user: User) -> QuerySet[Block]:
    return Block.objects.filter(blocker=user).select_related("blocked")


def session_list(*, user: User) -> QuerySet[LoginSession]:
    """The user's open login sessions: not revoked, and whose refresh token has not expired (an
    expired one can never be used again, so it is not a device still logged in)."""
    return LoginSession.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=timezone.now())


def user_search(*, viewer: User, query: str) -> User | None:
    """Exact search by handle or phone, respecting privacy and blocks. None when not found."""
    kind = classify_login(query)
    if kind is None or kind[0] == "email":
        return None
    field, value = kind
    privacy = {"handle": "findable_by_handle", "phone": "findable_by_phone"}[field]
    found = User.objects.filter(**{field: value, "is_active": True, "is_verified": True}).first()
    if found is None or found.pk == viewer.pk:
        return found
    if not getattr(found, privacy) and not is_contact(user_id=found.pk, other_id=viewer.pk):
        return None
    if has_blocked(blocker_id=found.pk, blocked_id=viewer.pk):
        return None
    return found
