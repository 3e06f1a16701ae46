"""The optional stages of `make bench` (bench/run.py): each a module bench/<name>.py whose
`main(argv)` runs it, writes its own bench/results/<date>-<name>.json and .md, and returns its
figures. A stage that cannot run (no Maven for ElasticMQ, no broker) is reported as skipped."""

from __future__ import annotations

import importlib
from typing import Any

OPTIONAL = ("gateway", "notifications")


def stages(names: list[str]) -> dict[str, Any]:
    """The optional stages (bench/<name>.py `main`), each writing its own result files."""
    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = importlib.import_module(f"bench.{name}").main([])
        except (Exception, SystemExit) as exc:  # optional: say why, go on
            out[name] = {"skipped": f"{type(exc).__name__}: {exc}"[:1000]}
            print(name, "skipped:", out[name]["skipped"], flush=True)
    return out


def stage_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (f"{n} stage", f"skipped ({f['skipped'][:200]})")
        for n in OPTIONAL
        if "skipped" in (f := figures.get(n) or {})
    ]
    if "latency" in (gw := figures.get("gateway") or {}):
        added, thr = gw["latency"]["added_ms"]["all"], gw["throughput"]
        rows.append(
            (
                "SP-API gateway: added latency (sequential calls)",
                f"p50 {added['p50']} ms, p99 {added['p99']} ms",
            )
        )
        rows.append(
            (
                "SP-API gateway: calls/s per core",
                f"{thr['calls_per_second_per_core']} ({thr['calls_per_second']} calls/s at {thr['concurrency']} clients)",
            )
        )
    if "events_per_second" in (nf := figures.get("notifications") or {}):
        rows.append(
            (
                "notifications: SQS to Kafka-acknowledged events",
                f"{nf['events_per_second']:,} events/s ({nf['notifications']:,} notifications)",
            )
        )
    return rows
