#!/bin/sh
# The ASGI server (uvicorn) for the /ws/ WebSocket; nginx sends it nothing else (deploy/nginx.conf).
# ASGI_WORKERS processes (default 1: add processes or replicas as sockets grow).
# Database: psycopg 3 with Django's pool, always. Persistent connections leak under ASGI (each
# request runs in its own thread context), and per-frame connects would be slow; see BENCHMARKS.md.
# bench/servers.py runs uvicorn with these same flags (UVICORN_FLAGS).
# No permessage-deflate: compressing every frame cost more of the one event loop that writes a
# group message to all its sockets than anything else per frame, and ~45 KiB of zlib state per
# socket; chat frames are ~400 bytes (docs/messaging.md, "Compression").
set -eu
export DB_DRIVER=psycopg DB_POOL=1 CONN_MAX_AGE=0
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
exec uvicorn superapp.asgi:application \
    --host 0.0.0.0 --port "${PORT:-8001}" --workers "${ASGI_WORKERS:-1}" \
    --no-access-log --lifespan off --ws-max-size 65536 --ws-per-message-deflate false --proxy-headers \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}" \
    --timeout-keep-alive 75 --timeout-graceful-shutdown 20
