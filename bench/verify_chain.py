"""How long `verify-chain` takes on one account chain of N events in the embedded warehouse.

Seeds N simulated events on one account (sequenced by the ledger, stored as the loader stores
them, in batches so memory stays flat), then times a whole-chain verification, a one-hour range
verification, `digest create` and `digest verify`. Figures go to
bench/results/verify_chain.json; nothing is asserted.

    python -m bench.verify_chain --events 1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT, Settings
from pipeline.event import format_ms, normalize, timestamp_ms
from pipeline.forensics.chain_check import verify_range
from pipeline.forensics.digest_verification import verify_digests
from pipeline.forensics.digests import create_digests
from pipeline.forensics.signing import hmac_signer
from pipeline.ledger import ChainHead, append
from pipeline.simulation.traffic import generate
from sinks.audit_store import event_row
from sinks.clickhouse import EmbeddedWarehouse, migrate

BATCH = 50_000


def seed(wh: EmbeddedWarehouse, count: int) -> tuple[str, int, int]:
    """Store `count` events of one account; return the account and the first and last ingest ms."""
    head = ChainHead()
    clock = 0
    first = 0
    rows: list[dict[str, Any]] = []
    account = ""
    for raw, _ in generate(
        count,
        seed=3,
        accounts=1,
        providers=4,
        attack_rate=0.0,
        attack_kinds=(),
        events_per_hour=20_000,
    ):
        event = normalize(raw)
        clock = max(clock + 1, timestamp_ms(event["occurred_at"], "t") + 2000)
        first = first or clock
        entry, head = append(head, event, format_ms(clock))
        account = entry["account_id"]
        rows.append(event_row(entry))
        if len(rows) >= BATCH:
            wh.insert("audit.events", rows)
            rows = []
    wh.insert("audit.events", rows)
    return account, first, clock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "bench" / "results" / "verify_chain.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-bench-chain-") as tmp:
        wh = EmbeddedWarehouse(Path(tmp) / "warehouse")
        migrate(wh, Settings.from_env({}))
        started = time.perf_counter()
        account, first, last = seed(wh, args.events)
        seeded = time.perf_counter() - started

        started = time.perf_counter()
        whole = verify_range(wh, account)
        whole_s = time.perf_counter() - started
        middle = (first + last) // 2
        started = time.perf_counter()
        hour = verify_range(wh, account, middle, middle + 3_600_000)
        hour_s = time.perf_counter() - started

        signer = hmac_signer("bench-digest-key-0123456789abcdef")
        started = time.perf_counter()
        made, problems = create_digests(wh, signer, "hour", last + 10 * 3_600_000, 0)
        create_s = time.perf_counter() - started
        started = time.perf_counter()
        report = verify_digests(wh, signer.verifier())
        digest_verify_s = time.perf_counter() - started
        wh.close()
    figures = {
        "events": args.events,
        "accounts": 1,
        "seed_seconds": round(seeded, 1),
        "verify_whole_chain_seconds": round(whole_s, 2),
        "verify_whole_chain_events_per_second": round(whole.events / whole_s),
        "verify_whole_chain_broken": whole.broken is not None,
        "verify_one_hour_range_seconds": round(hour_s, 3),
        "verify_one_hour_range_events": hour.events,
        "digest_create_seconds": round(create_s, 2),
        "digests": len(made),
        "digest_problems": len(problems),
        "digest_verify_seconds": round(digest_verify_s, 2),
        "digest_verify_problems": len(report.problems),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
