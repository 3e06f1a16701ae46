"""p50/p95 latency of every named forensic query on 10,000,000 stored events, seeded mostly in ClickHouse.

bench/forensic_queries.py seeds through the Python ledger (about 3,600 events/s here with
detection), so 10M events would take about 45 minutes of CPU before any query. This benchmark
stores a realistic base of `--base` events that way (simulator -> ledger -> loader rows, with the
alerts the detectors raise), then multiplies it inside the engine: copy j (1..k-1) is
`INSERT INTO audit.events SELECT ... FROM audit.events, numbers(...)` with occurred_at and
ingested_at shifted by j weeks, seq shifted by j times the account's base length (so seq stays
unique and ordered by time per account; the base spans under a week) and event_id suffixed
`-w<j>`; alerts are copied the same way with their evidence ids rewritten, so
alerts_with_evidence joins real rows. The rollup audit.activity_1m is fed by its materialized
view on those INSERT ... SELECTs (recorded: its countMerge total next to the event count).

Not realistic on purpose: prev_hash/hash/payload of copies are the base's (the hash chain is not
valid beyond the base -- irrelevant to query latency, no named query reads hashes -- and each
copy re-issues the base's grants), and every week repeats the base (3.5 days, most events in
~5 busy hours). Queries get parameters drawn from the data: the busiest (account, provider), its
most used office /24, the most repriced SKU, and a 6-hour window over the busy hours of the
middle week's copy (fund moves, rare, over 30 days). Writes
bench/results/forensic_queries_10m.json and a markdown table; nothing is asserted.

    python -m bench.forensic_queries_10m --events 10000000 --base 100000 --runs 20
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.forensic_queries import seed
from pipeline.config import REPO_ROOT, Settings
from pipeline.forensics.chain_check import ch_ms
from pipeline.forensics.queries import load
from sinks.clickhouse import EmbeddedWarehouse, migrate

WEEK_MS = 7 * 24 * 3_600_000
# Bounded memory on a shared machine; 2 threads match its 2 cores.
LIMITS = "max_memory_usage = 6000000000, max_threads = 2, max_insert_threads = 1"


def columns(wh: EmbeddedWarehouse, table: str) -> list[str]:
    """The table's stored columns in order (read, not hard-coded, so later migrations still work)."""
    db, name = table.split(".")
    rows = wh.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position",
        {"db": db, "t": name},
    ).rows
    return [r[0] for r in rows]


def copy_sql(
    table: str, cols: list[str], rewrite: dict[str, str], first: int, count: int, base_filter: str
) -> str:
    """INSERT ... SELECT that adds copies first..first+count-1 of the base rows (`number` = copy)."""
    select = ", ".join(rewrite.get(c, c) for c in cols)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table}, numbers({first}, {count}) AS copy "
        f"WHERE {base_filter} SETTINGS {LIMITS}"
    )


def multiply(wh: EmbeddedWarehouse, copies: int, per_insert: int) -> dict[str, float]:
    """Grow audit.events and audit.alerts to `copies` times the base inside the engine."""
    base_end = wh.query("SELECT toUnixTimestamp64Milli(max(occurred_at)) FROM audit.events").rows[
        0
    ][0]
    alerts_end = (
        wh.query("SELECT toUnixTimestamp64Milli(max(first_seen)) FROM audit.alerts").rows[0][0] or 0
    )
    stride = wh.query(
        "SELECT groupArray(toString(account_id)), groupArray(max_seq) FROM "
        "(SELECT account_id, max(seq) AS max_seq FROM audit.events GROUP BY account_id)"
    ).rows[0]
    accounts = ", ".join(f"'{a}'" for a in stride[0])
    strides = ", ".join(str(int(s)) for s in stride[1])
    shift = f"toIntervalSecond(number * {WEEK_MS // 1000})"
    events = copy_sql(
        "audit.events",
        columns(wh, "audit.events"),
        {
            "event_id": "concat(event_id, '-w', toString(number))",
            "seq": f"seq + number * transform(toString(account_id), [{accounts}], [{strides}], toUInt64(0))",
            "occurred_at": f"occurred_at + {shift}",
            "ingested_at": f"ingested_at + {shift}",
        },
        0,
        0,
        f"occurred_at <= fromUnixTimestamp64Milli(toInt64({base_end}), 'UTC')",
    )
    alerts = copy_sql(
        "audit.alerts",
        columns(wh, "audit.alerts"),
        {
            "alert_id": "concat(alert_id, '-w', toString(number))",
            "evidence_event_ids": "arrayMap(x -> concat(x, '-w', toString(number)), evidence_event_ids)",
            "first_seen": f"first_seen + {shift}",
            "last_seen": f"last_seen + {shift}",
        },
        0,
        0,
        f"first_seen <= fromUnixTimestamp64Milli(toInt64({alerts_end}), 'UTC')",
    )
    timing = {"events_s": 0.0, "alerts_s": 0.0}
    for first in range(1, copies, per_insert):
        count = min(per_insert, copies - first)
        for key, template in (("events_s", events), ("alerts_s", alerts)):
            sql = template.replace("numbers(0, 0) AS copy", f"numbers({first}, {count}) AS copy")
            started = time.perf_counter()
            wh.execute(sql)
            timing[key] += time.perf_counter() - started
        print(f"  copies {first}..{first + count - 1} stored", flush=True)
    return {k: round(v, 1) for k, v in timing.items()}


def settle(wh: EmbeddedWarehouse, limit_s: float = 300.0) -> float:
    """Wait (bounded) for background merges to finish, so queries are timed on a settled table."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if not wh.query("SELECT count() FROM system.merges WHERE database = 'audit'").rows[0][0]:
            break
        time.sleep(2)
    return round(time.perf_counter() - started, 1)


def storage(wh: EmbeddedWarehouse) -> dict[str, Any]:
    """Rows, active parts and on-disk bytes per audit table (system.parts)."""
    rows = wh.query(
        "SELECT table, sum(rows), count(), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts "
        "WHERE database = 'audit' AND active GROUP BY table ORDER BY table"
    ).rows
    return {
        r[0]: {
            "rows": int(r[1]),
            "parts": int(r[2]),
            "bytes_on_disk": int(r[3]),
            "uncompressed_bytes": int(r[4]),
        }
        for r in rows
    }


def parameters(world: dict[str, Any], copies: int) -> dict[str, dict[str, str]]:
    """Per-query parameters that select real data: a 6 h window over the busy hours of the middle
    week's copy; fund moves (rare: only attacks move funds in the simulator) over 30 days from there."""
    start = world["first"] + (copies // 2) * WEEK_MS
    window = {"from": ch_ms(start), "to": ch_ms(start + 6 * 3_600_000)}
    month = {"from": ch_ms(start), "to": ch_ms(start + 30 * 24 * 3_600_000)}
    return {
        "default": window,
        "provider_timeline": {"account": world["account"], "provider": world["provider"], **window},
        "from_ip": {"network": world["network"], **window},
        "sku_history": {"sku": world["sku"]},
        "fund_moves": month,
        "grant_history": {"account": world["account"]},
        "outside_grants": {"account": world["account"], **window},
        "top_writers": window,
        "alerts_with_evidence": window,
        "activity_per_minute": {"account": world["account"], **window},
    }


def time_queries(
    wh: EmbeddedWarehouse, params: dict[str, dict[str, str]], runs: int
) -> dict[str, Any]:
    """Each named query: one warm-up (its row count), then `runs` timed runs."""
    figures: dict[str, Any] = {}
    for name, query in load().items():
        bound = query.bind(params.get(name, params["default"]))
        rows = len(wh.query(query.sql, bound).rows)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            wh.query(query.sql, bound)
            times.append(time.perf_counter() - started)
        times.sort()
        figures[name] = {
            "rows": rows,
            "params": params.get(name, params["default"]),
            "p50_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))] * 1000, 1),
        }
        print(f"  {name}: {figures[name]['p50_ms']} ms p50", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="total events (a multiple of --base)"
    )
    parser.add_argument(
        "--base", type=int, default=100_000, help="events seeded through the Python ledger"
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--copies-per-insert", type=int, default=10)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "bench" / "results" / "forensic_queries_10m.json"
    )
    args = parser.parse_args()
    copies = max(1, args.events // args.base)
    with tempfile.TemporaryDirectory(prefix="pw-bench-queries-10m-") as tmp:
        wh = EmbeddedWarehouse(Path(tmp) / "warehouse")
        migrate(wh, Settings.from_env({"PW_DATA_DIR": tmp}))
        started = time.perf_counter()
        world = seed(wh, args.base, True)
        base_s = time.perf_counter() - started
        print(
            f"base of {args.base:,} events seeded in {base_s:.0f} s; multiplying x{copies}",
            flush=True,
        )
        copy_timing = multiply(wh, copies, args.copies_per_insert)
        seed_s = time.perf_counter() - started
        counts = wh.query(
            "SELECT (SELECT count() FROM audit.events), (SELECT count() FROM audit.alerts FINAL), "
            "(SELECT countMerge(events) FROM audit.activity_1m), "
            "(SELECT count() FROM (SELECT account_id, seq FROM audit.events GROUP BY account_id, seq "
            "HAVING count() > 1))"
        ).rows[0]
        events, alerts, rolled_up, dup_seq = (int(c) for c in counts)
        settled_s = settle(wh)
        disk = storage(wh)
        figures = time_queries(wh, parameters(world, copies), args.runs)
        wh_version = wh.query("SELECT version()").rows[0][0]
        wh.close()
    result = {
        "events": events,
        "alerts": alerts,
        "rollup_events": rolled_up,
        "duplicate_account_seq": dup_seq,
        "base_events": args.base,
        "copies": copies,
        "runs": args.runs,
        "seed_seconds": {"base_python": round(base_s, 1), **copy_timing, "total": round(seed_s, 1)},
        "merges_settled_seconds": settled_s,
        "storage": disk,
        "machine": platform.platform(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "chdb": wh_version,
        "caveat": "base events seeded through the Python ledger, the rest copies shifted by whole weeks with "
        "seq/event_id rewritten; copies keep the base's prev_hash/hash/payload, so the hash chain is "
        "valid only for the base (no named query reads hashes)",
        "queries": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ev = disk.get("events", {})
    print(
        f"{events:,} events ({alerts:,} alerts, rollup counts {rolled_up:,}, duplicate seqs {dup_seq}); "
        f"seeded in {seed_s:.0f} s (base {base_s:.0f} s in Python, copies {copy_timing}); "
        f"audit.events {ev.get('bytes_on_disk', 0) / 2**20:.0f} MiB on disk in {ev.get('parts')} parts; "
        f"{args.runs} runs per query"
    )
    print("| query | rows | p50 ms | p95 ms |\n|---|---|---|---|")
    for name, f in figures.items():
        print(f"| `{name}` | {f['rows']} | {f['p50_ms']} | {f['p95_ms']} |")


if __name__ == "__main__":
    main()
