"""Interleaved measurement rounds and the report (figure, anchor, ratio)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from . import load
from .env import ROOT


@dataclass
class Target:
    key: str
    label: str
    url: str
    cpu_seconds: Callable[[], float]
    headers: dict[str, str] = field(default_factory=dict)
    db_app: str | None = None  # application_name whose connections are sampled
    results: list[load.Result] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.results)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu_ms_per_request for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    @property
    def peak_db(self) -> int:
        return max((r.peak_db_connections for r in self.results), default=0)


def run_rounds(targets: list[Target], *, rounds: int, seconds: float, warmup: float = 1.0) -> None:
    """Measure every target ``rounds`` times, interleaved (A B C, B C A, ...), so that a burst of
    load from elsewhere on the machine hits all variants alike rather than one of them."""
    for target in targets:
        load.wrk(target.url, warmup, target.headers)
    for round_no in range(rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            before = target.cpu_seconds()
            result = load.wrk(target.url, seconds, target.headers, watch_app=target.db_app)
            result.cpu_ms_per_request = (target.cpu_seconds() - before) * 1000 / max(result.requests, 1)
            target.results.append(result)
        print(f"  round {round_no + 1}/{rounds} done", flush=True)


def ratio(subject: Target, anchor: Target) -> float:
    """Median over rounds of the per-round throughput ratio (both measured in the same round)."""
    return statistics.median(s.rps / a.rps for s, a in zip(subject.results, anchor.results, strict=True))


def table(rows: list[tuple[str, Target, str]]) -> str:
    """A Markdown table: role, what, req/s, p99, server CPU per request, errors, comparison."""
    lines = [
        "| | served by | req/s | p99 ms | server CPU ms/req | non-2xx | compared with the anchor |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for role, target, comparison in rows:
        lines.append(
            f"| {role} | {target.label} | {target.rps:,.0f} | {target.p99:.1f} | {target.cpu:.2f} | "
            f"{target.errors} | {comparison} |"
        )
    return "\n".join(lines)


def compare(subject: Target, anchor: Target, name: str) -> str:
    return f"{ratio(subject, anchor):.2f}x the req/s of {name}; p99 {subject.p99:.1f} vs {anchor.p99:.1f} ms"


def save(scenario: str, payload: dict) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{scenario}-{stamp}.json").write_text(json.dumps(payload, indent=2, default=_plain))


def _plain(value):
    if isinstance(value, Target):
        return {"key": value.key, "label": value.label, "rounds": [asdict(r) for r in value.results]}
    return str(value)
