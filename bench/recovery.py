"""How long a worker takes to load its partitions' state after a run, from the ledger snapshots
(pipeline/ledger_snapshot.py) and the ledger after them, and from the whole ledger.

Used by bench/run.py after the one-worker run, on its namespace (its topics still hold every
event): the worker is started again twice with nothing new to do, once as configured (the
snapshots are used) and once with other dedup filter settings (`PW_DEDUP_FILTER_MB` halved: a
snapshot made with other settings is not used, so each partition reads its whole ledger, as
every load did before snapshots). The figures are those the worker logs (`ingest.state_loaded`:
entries read and seconds, per partition).
"""

from __future__ import annotations

import re
import time
from typing import Any

from partnerwatch.local_worker import Namespace, Worker, free_port

_LOADED = re.compile(
    r"ingest\.state_loaded.*?entries=(\d+).*?partition=(\d+) seconds=([\d.]+) snapshot=(\w+)"
)


def restart(ns: Namespace, env: dict[str, str], timeout: float = 900.0) -> dict[str, Any]:
    # Info level: the loads are read from the worker's log (the bench's workers log warnings only).
    again = Namespace(
        ns.root,
        name=ns.name,
        port=free_port(),
        extra_env={**ns.extra_env, **env, "PW_LOG_LEVEL": "info"},
    )
    worker = Worker(again)
    offset = worker.log_path.stat().st_size if worker.log_path.exists() else 0
    partitions = again.settings.topic_partitions
    started = time.monotonic()
    worker.start()
    try:
        loads: dict[int, tuple[int, float, bool]] = {}
        while len(loads) < partitions and time.monotonic() - started < timeout:
            with worker.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            for entries, partition, seconds, snapshot in _LOADED.findall(text):
                loads[int(partition)] = (int(entries), float(seconds), snapshot == "True")
            time.sleep(0.2)
        wall = time.monotonic() - started
        if len(loads) < partitions:
            raise SystemExit(f"{len(loads)} of {partitions} partitions loaded: {worker.log_tail()}")
    finally:
        worker.stop()
    return {
        "env": env,
        "partitions_loaded": len(loads),
        "from_snapshot": sum(1 for _, _, snap in loads.values() if snap),
        "ledger_entries_read": sum(e for e, _, _ in loads.values()),
        "slowest_partition_seconds": max((s for _, s, _ in loads.values()), default=None),
        "start_to_loaded_seconds": round(wall, 2),
    }


def recovery(ns: Namespace) -> dict[str, Any]:
    half = str(ns.settings.dedup_filter_mb / 2)
    return {
        "with_snapshots": restart(ns, {}),
        "whole_ledger": restart(ns, {"PW_DEDUP_FILTER_MB": half}),
    }
