"""Benchmarks: ``python -m bench <scenario>`` (or ``all``); results go in ``BENCHMARKS.md``.

Each scenario runs real server processes (gunicorn, uvicorn, nginx) on 127.0.0.1 against its own
PostgreSQL database (``superapp_bench``) and Redis database 3, drives them with ``wrk`` and
prints each figure beside an anchor measured in the same run, with the ratio. Benchmarks report
numbers; they never assert (tests assert behaviour).
"""
