"""Scenario ``me``: authenticated ``GET /api/v1/me`` on the production topology, with anchors.

Production topology: nginx (deploy/nginx.conf) -> gunicorn (deploy/gunicorn.conf.py), the database
reached as settings.py's production default (see ``bench.topology.PRODUCTION``). Anchors, in the
same run: a bare ASGI app under uvicorn, and a bare Django view doing one primary-key SELECT
under gunicorn (direct, and through the same nginx). Also /me straight from gunicorn, so the
proxy's share is visible.
"""

from __future__ import annotations

from .env import login
from .measure import Target, compare, ratio, run_rounds, save, table
from .stacks import Anchor, Running, start_all
from .topology import PRODUCTION, _user_id


def run(*, rounds: int, seconds: float) -> str:
    items: list = []
    try:
        items.append(bare := Anchor("asgi"))
        items.append(anchor := Anchor("django", proxy=True))
        items.append(prod := Running(PRODUCTION))
        start_all(items)
        token = login(prod.url)
        user_id = _user_id(prod.url, token)
        auth = {"Authorization": f"Bearer {token}"}
        anchor_path = anchor.path.format(user_id=user_id)
        gunicorn = prod.app

        bare_t = Target("bare_asgi", bare.label, bare.url + "/", bare.cpu_seconds)
        anchor_t = Target(
            "anchor_django",
            anchor.server_label,
            anchor.server.url + anchor_path,
            anchor.server.cpu_seconds,
            db_app="b_anchor_django",
        )
        anchor_proxy_t = Target(
            "anchor_django_nginx", anchor.label, anchor.url + anchor_path, anchor.cpu_seconds
        )
        me_t = Target(
            "me_production",
            PRODUCTION.label,
            prod.url + "/api/v1/me",
            prod.cpu_seconds,
            auth,
            f"b_{PRODUCTION.key}",
        )
        me_direct_t = Target(
            "me_direct",
            PRODUCTION.label.replace("nginx -> ", "") + " (no proxy)",
            gunicorn.url + "/api/v1/me",
            gunicorn.cpu_seconds,
            auth,
        )
        targets = [bare_t, anchor_t, anchor_proxy_t, me_t, me_direct_t]
        print(f"me: {len(targets)} targets, {rounds} rounds of {seconds:g}s", flush=True)
        run_rounds(targets, rounds=rounds, seconds=seconds)
    finally:
        for item in reversed(items):
            item.stop()

    rows = [
        ("anchor", bare_t, ""),
        ("anchor", anchor_t, ""),
        (
            "anchor",
            anchor_proxy_t,
            compare(anchor_proxy_t, anchor_t, "the Django anchor") + " (the proxy's cost)",
        ),
        (
            "**/me, production**",
            me_t,
            f"**{compare(me_t, anchor_t, 'the Django anchor')}**; {compare(me_t, bare_t, 'the bare ASGI app')}; "
            f"{compare(me_t, anchor_proxy_t, 'the Django anchor behind the same nginx')}",
        ),
        ("/me, no proxy", me_direct_t, compare(me_direct_t, anchor_t, "the Django anchor")),
    ]
    goal = ratio(me_t, anchor_t)
    verdict = "met" if goal >= 0.8 else "NOT met"
    by_cpu = anchor_t.cpu / me_t.cpu
    text = "\n".join(
        [
            "### me: authenticated GET /api/v1/me on the production topology",
            "",
            table(rows),
            "",
            f"Goal, at least 0.8x the gunicorn anchor's req/s: {verdict} ({goal:.2f}x).",
            f"By server CPU per request, which other load on the machine disturbs far less than req/s: "
            f"{anchor_t.cpu:.2f} / {me_t.cpu:.2f} ms = {by_cpu:.2f}x (the anchor's CPU per request over /me's; "
            f"/me's includes nginx's).",
        ]
    )
    save("me", {"targets": targets})
    return text
