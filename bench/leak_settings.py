"""Settings of the leak demonstration only: psycopg2 with CONN_MAX_AGE=60 under ASGI.

superapp.settings refuses that combination (it leaks connections); the bench sets it here, after
the fact, to show why (bench.topology.leak_check).
"""

from superapp.settings import *  # noqa: F403
from superapp.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 60
