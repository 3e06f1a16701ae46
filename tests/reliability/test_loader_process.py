"""`partnerwatch loader` SIGKILLed twice mid-load, ledger records still arriving: each entry once.

The loader process owns the embedded warehouse (no worker runs: the ledger records are produced
straight to the ledger topic), inserts batches of PW_WAREHOUSE_BATCH_ROWS and is killed at seeded
random points after some batches are stored, so a kill lands while a batch is being read, checked,
inserted or committed. After each restart the redelivered records below the partition marks are
skipped and those of the batch in flight are looked up; at the end `count()` equals the entries
produced, `(account_id, seq)` is unique, every chain verifies and the marks stand at the ends.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from partnerwatch.local_worker import Loader, free_port, wait_for
from sinks.clickhouse import EmbeddedWarehouse
from sinks.loader_offsets import read_marks
from tests.integration.test_loader_marks import Ledger, assert_exactly_once, end_offsets, namespace
from tests.integration.test_loader_process import committed

pytestmark = pytest.mark.reliability


def test_loader_process_killed_twice_mid_load_stores_each_entry_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    rng = random.Random(20261202)
    ns = namespace(tmp_path, batch_rows=2_000)
    ledger = Ledger(ns)
    ledger.produce(20_000)
    env = {"PW_LOADER_PORT": str(free_port())}
    loader = Loader(ns, env).start()
    kills = []
    try:
        for round_ in range(2):
            floor = rng.randint(1, 4) * 1_000
            wait_for(
                lambda f=floor, lo=loader: lo.health().get("stored_events", 0) >= f,
                240,
                f"{floor} rows stored in this run",
                0.05,
            )
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere in the next batch
            doc = loader.health()
            kills.append({"stored": doc.get("stored_events"), "skipped": doc.get("skipped_stored")})
            loader.kill()
            if round_ == 0:
                ledger.produce(6_000)  # more arrive while it is down
            loader = Loader(ns, env).start()
        ledger.produce(4_000)
        ends = end_offsets(ns)
        wait_for(
            lambda: committed(ns, ns.settings.ledger_topic) == ends,
            300,
            "the loader to commit every ledger record",
        )
        skipped = loader.health().get("skipped_stored")
        loader.stop()
        assert loader.proc is not None and loader.proc.returncode == 0, loader.log_tail()
    finally:
        loader.stop()
    wh = EmbeddedWarehouse(ns.settings.warehouse_path)
    try:
        assert_exactly_once(wh, 30_000)
        assert {p: m.end for p, m in read_marks(wh, ns.settings.ledger_topic).items()} == ends
    finally:
        wh.close()
    print(
        f"loader SIGKILL x2: this run's figures at each kill {kills}; skipped as stored after the last restart {skipped}"
    )
