"""Throughput of the whole pipeline on this machine: N simulated events through real Kafka.

Measures, from the first produced message: the time until the ingest agent has sequenced all
events (`pw_events_accepted_total` on /metrics) and until the warehouse holds all N rows (the
detect agent runs meanwhile on the same worker). Writes the figures to
bench/results/pipeline_throughput.json; asserts nothing (shared machines are noisy).

    python -m bench.pipeline_throughput [--count 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson

from pipeline.local_worker import Namespace, Worker
from pipeline.simulator import generate

RESULTS = Path(__file__).parent / "results" / "pipeline_throughput.json"


def accepted(ns: Namespace) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("pw_events_accepted_total "):
                return float(line.split()[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ns = Namespace(Path(tmp))
        worker = Worker(ns).start()
        try:
            events = [e for e, _ in generate(args.count, seed=99)]
            t0 = time.monotonic()
            ns.send(events)
            produced = time.monotonic() - t0
            sequenced = stored = None
            while time.monotonic() - t0 < 600 and stored is None:
                if sequenced is None and accepted(ns) >= args.count:
                    sequenced = time.monotonic() - t0
                if sequenced is not None and ns.scalar("SELECT count() FROM audit.events") >= args.count:
                    stored = time.monotonic() - t0
                time.sleep(0.1)
        finally:
            worker.stop()
    if sequenced is None or stored is None:
        raise SystemExit("the pipeline did not finish within 600 s")
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": args.count,
        "produce_seconds": round(produced, 3),
        "sequenced_seconds": round(sequenced, 3),
        "stored_seconds": round(stored, 3),
        "ingest_events_per_second": round(args.count / sequenced, 1),
        "end_to_end_events_per_second": round(args.count / stored, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": "make bench  (python -m bench.pipeline_throughput --count N)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
