"""Run jobs at the same time in threads, each with its own database connection, for the tests
that race real services against each other on PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction


@dataclass(frozen=True)
class Outcome:
    """What the jobs did, in job order: ``results[i]`` is what job ``i`` returned (None if it
    raised), ``errors[i]`` the exception it raised (None if it returned)."""

    results: list[Any]
    errors: list[BaseException | None]

    @property
    def raised(self) -> list[BaseException]:
        """The exceptions raised, in job order."""
        return [error for error in self.errors if error is not None]


def indexed(count: int, job: Callable[[int], Any]) -> list[Callable[[], Any]]:
    """``count`` jobs: ``job(0)`` .. ``job(count - 1)``."""
    return [functools.partial(job, index) for index in range(count)]


def run_together(jobs: Sequence[Callable[[], Any]], *, timeout: float = 120, barrier: bool = True) -> Outcome:
    """Run every job in a thread of its own and wait for them all.

    With ``barrier`` the jobs are released together once every thread is running (a thread that
    waits longer than ``timeout`` for the others records ``BrokenBarrierError``); without it each
    starts as soon as its thread does. Each thread closes its database connection when its job
    ends. A thread still running ``timeout`` seconds after the start fails the call.
    """
    count = len(jobs)
    results: list[Any] = [None] * count
    errors: list[BaseException | None] = [None] * count
    gate = threading.Barrier(count) if barrier and count else None

    def run(index: int) -> None:
        try:
            if gate is not None:
                gate.wait(timeout=timeout)
            results[index] = jobs[index]()
        except BaseException as exc:  # collected for the caller's assertions
            errors[index] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(i,), name=f"run_together-{i}", daemon=True) for i in range(count)
    ]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [i for i, thread in enumerate(threads) if thread.is_alive()]
    if stuck:
        raise AssertionError(f"jobs {stuck} of {count} still running after {timeout}s")
    return Outcome(results=results, errors=errors)


class HeldLocks:
    """Another transaction, in a thread (and connection) of its own, holding the row locks that
    ``lock()`` takes until :meth:`release`: a payment, a group operation, another batch, as the
    code under test meets them. Started by :func:`hold_locks`."""

    def __init__(self, lock: Callable[[], Any], *, timeout: float = 30) -> None:
        self._locked, self._release = threading.Event(), threading.Event()
        self._errors: list[BaseException] = []
        self._timeout = timeout

        def run() -> None:
            try:
                with transaction.atomic():
                    lock()
                    self._locked.set()
                    self._release.wait(timeout)
            except BaseException as exc:  # reported by hold_locks
                self._errors.append(exc)
                self._locked.set()
            finally:
                connection.close()

        self._thread = threading.Thread(target=run, name="held-locks", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Commit the holding transaction and wait for its thread."""
        self._release.set()
        self._thread.join(self._timeout)
        assert not self._thread.is_alive(), "the lock holder did not finish"

    async def arelease(self) -> None:
        """:meth:`release` from an async test (the join runs off the event loop)."""
        await asyncio.get_running_loop().run_in_executor(None, self.release)


def hold_locks(lock: Callable[[], Any], *, timeout: float = 30) -> HeldLocks:
    """Take the locks ``lock()`` takes in another transaction and hold them (returns once held)."""
    held = HeldLocks(lock, timeout=timeout)
    assert held._locked.wait(10), "the lock holder never took its locks"
    assert not held._errors, held._errors
    return held
