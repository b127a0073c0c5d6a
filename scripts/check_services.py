"""Before the tests: are PostgreSQL and Redis reachable? Says which is not, and how to start it."""

import os
import sys
from urllib.parse import urlparse

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/superapp")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def check_postgres() -> str | None:
    import psycopg2

    url = urlparse(DATABASE_URL)
    try:
        psycopg2.connect(
            host=url.hostname,
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except Exception as exc:
        return (
            f"PostgreSQL is not reachable at {url.hostname}:{url.port or 5432} ({str(exc).strip()}).\n"
            "  Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
            "  (or `docker-compose up -d postgres`), or point DATABASE_URL at a running server."
        )
    return None


def check_redis() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return (
            f"Redis is not reachable at {REDIS_URL} ({exc}).\n"
            "  Start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no\n"
            "  (or `docker-compose up -d redis`), or point REDIS_URL at a running server."
        )
    return None


def main() -> int:
    problems = [p for p in (check_postgres(), check_redis()) if p]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("The test suite needs both; not running it.", file=sys.stderr)
        return 1
    print(f"PostgreSQL and Redis reachable ({DATABASE_URL.split('@')[-1]}, {REDIS_URL.split('@')[-1]}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
