"""Drive a URL with wrk and read back req/s, p50, p99 and errors."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from dataclasses import dataclass

from .env import connections_by_app

# One wrk thread: on 2 cores the load generator competes with the servers for CPU; one thread
# keeps its share small and the same for every variant.
WRK_THREADS = 1
CONNECTIONS = 8

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    peak_db_connections: int = 0
    stopped_early: bool = False
    cpu_ms_per_request: float = 0.0

    def row(self) -> str:
        return f"{self.rps:8.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms"


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(x) for x in match.groups())
    return Result(rps, p50, p99, requests, errors)


def wrk(
    url: str,
    seconds: float,
    headers: dict[str, str] | None = None,
    connections: int = CONNECTIONS,
    watch_app: str | None = None,
    max_db_connections: int | None = None,
) -> Result:
    """One wrk run. With ``watch_app``, the peak number of PostgreSQL connections opened by that
    application_name is sampled; past ``max_db_connections`` wrk is stopped early (a leak must
    not exhaust a shared server's connection slots)."""
    argv = [
        "wrk",
        "--latency",
        "-t",
        str(WRK_THREADS),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "5s",
    ]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    proc = subprocess.Popen([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"count": 0, "stopped_early": False}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            count = connections_by_app().get(watch_app, 0)
            peak["count"] = max(peak["count"], count)
            if max_db_connections is not None and count > max_db_connections and proc.poll() is None:
                peak["stopped_early"] = True
                proc.send_signal(signal.SIGINT)  # wrk prints what it measured so far

    sampler = threading.Thread(target=sample, daemon=True) if watch_app else None
    if sampler:
        sampler.start()
    try:
        output, errors = proc.communicate(timeout=seconds + 30)
    finally:
        stop.set()
        if sampler:
            sampler.join()
    if proc.returncode not in (0, -signal.SIGINT) and "Requests/sec" not in output:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {errors}")
    result = parse(output)
    result.peak_db_connections = peak["count"]
    result.stopped_early = bool(peak["stopped_early"])
    return result
