"""SQL text for the statements Moments writes by hand (``moments.feed``, the fan-out insert).

Who is whose friend is accounts' rule: these statements embed accounts' own query
(``accounts.selectors.friend_ids_query``), compiled by Django once per process, rather than a
copy of it, so that a change to that rule reaches them too.
"""

from __future__ import annotations

import functools

from accounts import selectors as account_selectors

_SENTINEL_ID = -7_000_001


@functools.cache
def _friend_ids_pieces() -> tuple[list[str], list[object]]:
    sql, params = account_selectors.friend_ids_query(user_id=_SENTINEL_ID).query.sql_with_params()
    pieces = sql.split("%s")
    if len(pieces) != len(params) + 1 or any("%" in piece for piece in pieces):
        raise RuntimeError(f"unexpected SQL for friend_ids_query: {sql!r}")
    # Integers (psycopg 3 hands Django's constants over as its Int4, an int subclass).
    if any(p != _SENTINEL_ID and (not isinstance(p, int) or isinstance(p, bool)) for p in params):
        raise RuntimeError(f"unexpected parameters for friend_ids_query: {params!r}")
    return pieces, list(params)


def friend_ids_sql(*, param: str) -> str:
    """accounts' ``friend_ids_query`` as SQL text (one column, ``friend_id``), the user being the
    named parameter ``param``: for the statements Moments writes by hand (``moments.feed``, the
    fan-out), so that the rule of who is a friend stays accounts' own. Compiled once."""
    pieces, params = _friend_ids_pieces()
    out = [pieces[0]]
    for value, piece in zip(params, pieces[1:], strict=True):
        # Django's own constants (the 1 of EXISTS) are integers: inlined; the user is a parameter.
        out.append(f"%({param})s" if value == _SENTINEL_ID else str(int(value)))
        out.append(piece)
    return "".join(out)
