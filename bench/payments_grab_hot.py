"""A red-packet grab's hot section, in one process: ``python -m bench.payments_grab_hot [grabs]``.

Load-independent evidence for ``bench/payments_grabs.py``: grabs of one packet queue on the rows
every grab of it writes (the packet row, the sender's red-packet escrow account, the sender's
event stream head). What limits them is how long each grab holds those rows: from the first
statement that locks one of them to the end of its COMMIT. This tool calls ``red_packet_grab``
one at a time (no contention) and prints, per successful grab: SQL statements in all and in the
hot section, and the CPU time (``time.process_time``: this process only, waiting for PostgreSQL
costs nothing) and wall time of the hot section and of the whole call.

Its own PostgreSQL database ``superapp_pay_grabhot`` (dropped, created and migrated each run; no
other scenario uses it, so it can run beside them) with the payments benchmarks' settings; a
child process creates a sender and 100 grabbers in a group and sends 100-share lucky packets
through the service. Optional argument: the number of grabs to time (default 300).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
import uuid

# The statement that takes a grab's first lock on a row every grab of the packet writes: the
# packet row (``SELECT ... FOR UPDATE`` before the pre-split shares, ``UPDATE`` after) or the
# escrow account (the ledger's ``SELECT ... FOR UPDATE`` of the accounts).
HOT = re.compile(
    r'FROM "?payments_redpacket"?\s.*FOR UPDATE|^\s*UPDATE "?payments_redpacket"?\s'
    r'|FROM "?payments_ledgeraccount"?\s.*FOR UPDATE',
    re.S,
)


class Recorder:
    """Each statement's text and CPU/wall clock at its start; COMMIT's end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def __call__(self, execute, sql, params, many, context):
        self.rows.append((sql, time.process_time(), time.perf_counter()))
        return execute(sql, params, many, context)


def main(n: int) -> str:
    import django

    django.setup()
    from django.db import connection
    from django.db.backends.base.base import BaseDatabaseWrapper

    from accounts.models import Friendship
    from messaging import services as chat_services
    from payments import red_packets

    from .payments_seed import PIN, _users, _wallets

    prefix = f"ghot{uuid.uuid4().hex[:6]}"
    sender = _users(prefix + "s", 1)[0]
    grabbers = _users(prefix + "g", 100)
    Friendship.objects.bulk_create(
        [Friendship(user_id=sender, friend_id=g) for g in grabbers]
        + [Friendship(user_id=g, friend_id=sender) for g in grabbers]
    )
    _wallets([sender], funds=10**9, escrow="red_packet_escrow")
    _wallets(grabbers, funds=1, escrow=None)
    group = chat_services.group_create(creator_id=sender, name="grab hot", member_ids=grabbers)

    recorder = Recorder()
    commits: list[tuple[float, float]] = []
    original_commit = BaseDatabaseWrapper._commit

    def timed_commit(self):
        try:
            return original_commit(self)
        finally:
            commits.append((time.process_time(), time.perf_counter()))

    samples: dict[str, list[float]] = {k: [] for k in ("all", "hot", "cpu", "hot_cpu", "wall", "hot_wall")}
    done = 0
    warm = 20
    BaseDatabaseWrapper._commit = timed_commit
    try:
        with connection.execute_wrapper(recorder):
            while done < n + warm:
                packet = red_packets.red_packet_send(
                    sender_id=sender,
                    kind="lucky",
                    total_amount=10_000,
                    count=100,
                    conversation_id=group.pk,
                    pin=PIN,
                )
                # The last grab of each packet also finishes it (the bubble to every member): left out.
                for user_id in grabbers[:99]:
                    if done >= n + warm:
                        break
                    recorder.rows.clear()
                    commits.clear()
                    cpu, wall = time.process_time(), time.perf_counter()
                    red_packets.red_packet_grab(user_id=user_id, packet_id=packet.pk)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    done += 1
                    if done <= warm:
                        continue
                    statements = [r for r in recorder.rows if r[0] not in ("BEGIN", "COMMIT")]
                    first_hot = next(i for i, r in enumerate(statements) if HOT.search(r[0]))
                    commit_cpu, commit_wall = commits[-1]
                    samples["all"].append(len(statements))
                    samples["hot"].append(len(statements) - first_hot)
                    samples["cpu"].append(cpu * 1000)
                    samples["wall"].append(wall * 1000)
                    samples["hot_cpu"].append((commit_cpu - statements[first_hot][1]) * 1000)
                    samples["hot_wall"].append((commit_wall - statements[first_hot][2]) * 1000)
    finally:
        BaseDatabaseWrapper._commit = original_commit
    last = [r[0] for r in recorder.rows]
    med = {k: statistics.median(v) for k, v in samples.items()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"{n} successful grabs, one at a time (100-share lucky packets, a 101-member group); "
            f"medians; load average {load}",
            "",
            "| per grab | SQL statements (BEGIN, COMMIT not counted) | CPU ms (this process) | wall ms |",
            "|---|---:|---:|---:|",
            f"| the whole call | {med['all']:.0f} | {med['cpu']:.2f} | {med['wall']:.2f} |",
            f"| hot section: first lock on a shared row -> end of COMMIT | {med['hot']:.0f} | "
            f"{med['hot_cpu']:.2f} | {med['hot_wall']:.2f} |",
            "",
            "The last grab's statements:",
            "",
            *[f"    {' '.join(s.split())[:150]}" for s in last],
        ]
    )


DB = "superapp_pay_grabhot"


def _run(n: int) -> str:
    """Prepare the database, then measure in a child process with the bench's environment."""
    import subprocess

    from .env import PG, ROOT, psql
    from .payments_common import django_env

    psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{DB}"')
    env = django_env("b_pay_grabhot", DATABASE_URL=f"{PG}/{DB}?application_name=b_pay_grabhot")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bench.payments_grab_hot", "--child", str(n)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"payments_grab_hot failed:\n{done.stderr[-4000:]}")
    return done.stdout


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(main(int(sys.argv[2])))
    else:
        print(_run(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
