"""p50/p95 latency of every named forensic query (pipeline/forensics/query_library) on N stored events.

Seeds N simulated events (6 accounts, attacks at a low rate) into a fresh embedded warehouse the
way the loader stores them (ledger-sequenced, batched inserts, the activity rollup fed by its
materialized view) with the alerts the detectors raise, then runs each query `--runs` times
(after one warm-up) with realistic parameters: one account, one provider, a 6-hour window in
the middle of the data, a busy SKU, an office /24. Also times one retro-hunt. Figures go to
bench/results/forensic_queries.json and a markdown table on stdout; nothing is asserted.

    python -m bench.forensic_queries --events 10000000 --runs 20
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from detectors.retro_hunt import hunt
from detectors.run import new_state, observe
from pipeline.alert import alert_id, fold
from pipeline.config import REPO_ROOT, DetectionConfig, Settings
from pipeline.event import format_ms, normalize, timestamp_ms
from pipeline.forensics.chain_check import ch_ms
from pipeline.forensics.queries import load
from pipeline.ledger import ChainHead, append
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.audit_store import event_row, store_alerts
from sinks.clickhouse import EmbeddedWarehouse, migrate

BATCH = 50_000


def seed(wh: EmbeddedWarehouse, count: int, detect: bool) -> dict[str, Any]:
    """Store `count` events (and their alerts); return what the query parameters are drawn from."""
    heads: dict[str, ChainHead] = {}
    states: dict[str, Any] = {}
    alerts: dict[str, dict[str, Any]] = {}
    config = DetectionConfig()
    rows: list[dict[str, Any]] = []
    providers: Counter[tuple[str, str]] = Counter()
    skus: Counter[str] = Counter()
    nets: Counter[str] = Counter()
    clock = first = 0
    for raw, _ in generate(
        count,
        seed=5,
        accounts=6,
        providers=4,
        attack_rate=0.0005,
        attack_kinds=ATTACKS,
        events_per_hour=20_000,
    ):
        event = normalize(raw)
        occurred = timestamp_ms(event["occurred_at"], "t")
        first = first or occurred
        clock = max(clock + 1, occurred + 2000)
        account = event["account_id"]
        entry, heads[account] = append(heads.get(account, ChainHead()), event, format_ms(clock))
        rows.append(event_row(entry))
        actor = event["actor"]
        if actor["type"] == "provider":
            providers[(account, actor["provider_id"])] += 1
            ip = event.get("source", {}).get("ip", "")
            if "." in ip:
                nets[ip.rsplit(".", 1)[0] + ".0/24"] += 1
        if event["action"] == "listing.price_change":
            skus[event["resource"]["id"]] += 1
        if detect:
            for finding in observe(states.setdefault(account, new_state()), event, config):
                key = alert_id(finding.detector, finding.key, finding.window)
                alerts[key] = fold(alerts.get(key), finding, event, entry["seq"])
        if len(rows) >= BATCH:
            wh.insert("audit.events", rows)
            rows = []
    wh.insert("audit.events", rows)
    for start in range(0, len(alerts), BATCH):
        store_alerts(wh, list(alerts.values())[start : start + BATCH])
    (account, provider), _ = providers.most_common(1)[0]
    return {
        "account": account,
        "provider": provider,
        "first": first,
        "last": clock,
        "alerts": len(alerts),
        "sku": skus.most_common(1)[0][0],
        "network": nets.most_common(1)[0][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--no-detect", action="store_true", help="store no alerts (seeding is faster)"
    )
    parser.add_argument("--hunt-detector", default="listing_out_of_scope")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "bench" / "results" / "forensic_queries.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-bench-queries-") as tmp:
        wh = EmbeddedWarehouse(Path(tmp) / "warehouse")
        migrate(wh, Settings.from_env({}))
        started = time.perf_counter()
        world = seed(wh, args.events, not args.no_detect)
        seed_s = time.perf_counter() - started
        middle = (world["first"] + world["last"]) // 2
        window = {"from": ch_ms(middle), "to": ch_ms(middle + 6 * 3_600_000)}
        params = {
            "provider_timeline": {
                "account": world["account"],
                "provider": world["provider"],
                **window,
            },
            "from_ip": {"network": world["network"], **window},
            "sku_history": {"sku": world["sku"]},
            "fund_moves": window,
            "grant_history": {"account": world["account"]},
            "outside_grants": {"account": world["account"], **window},
            "top_writers": window,
            "alerts_with_evidence": window,
            "activity_per_minute": {"account": world["account"], **window},
        }
        library = load()
        figures: dict[str, Any] = {}
        for name, query in library.items():
            bound = query.bind(params.get(name, window))
            rows = len(wh.query(query.sql, bound).rows)  # warm-up
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                wh.query(query.sql, bound)
                times.append(time.perf_counter() - started)
            times.sort()
            figures[name] = {
                "rows": rows,
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))] * 1000, 1),
            }
        started = time.perf_counter()
        report = hunt(wh, args.hunt_detector, middle, middle + 6 * 3_600_000, world["account"])
        hunt_s = time.perf_counter() - started
        wh.close()
    result = {
        "events": args.events,
        "alerts": world["alerts"],
        "runs": args.runs,
        "seed_seconds": round(seed_s, 1),
        "machine": platform.platform(),
        "queries": figures,
        "hunt": {
            "detector": args.hunt_detector,
            "account": world["account"],
            "seconds": round(hunt_s, 2),
            "events_replayed": report.events_replayed,
            "findings": len(report.findings),
            "events_per_second": round(report.events_replayed / hunt_s) if hunt_s else None,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.events:,} events, {world['alerts']:,} alerts, seeded in {seed_s:.0f} s; {args.runs} runs per query"
    )
    print("| query | rows | p50 ms | p95 ms |\n|---|---|---|---|")
    for name, f in figures.items():
        print(f"| `{name}` | {f['rows']} | {f['p50_ms']} | {f['p95_ms']} |")
    h = result["hunt"]
    print(
        f"hunt {h['detector']} on {h['account']} (6 h window): {h['events_replayed']:,} events replayed in "
        f"{h['seconds']} s ({h['events_per_second']} events/s), {h['findings']} findings"
    )


if __name__ == "__main__":
    main()
