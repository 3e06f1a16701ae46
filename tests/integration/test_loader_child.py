"""`PW_WAREHOUSE_LOADER=process` (the default): the worker runs the warehouse loader as a child
process that owns the embedded warehouse (streams/loader_child.py), on the real broker.

The child loads what the worker sequenced, every entry once with its chain intact; the worker
answers SQL through it and shows its figures; killed with SIGKILL the child is started again
(health says so meanwhile) and resumes from its marks without a duplicate; it stops with the
worker, and does not outlive a worker killed with SIGKILL, so the next worker opens the warehouse.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from partnerwatch.local_worker import Namespace, Worker, metric, wait_for
from pipeline.ledger import CHAIN_QUERY, verify_stored
from pipeline.simulation.traffic import generate
from sinks.clickhouse import EmbeddedWarehouse
from tests.integration.test_provider_stage_child import health, parent_of, running

pytestmark = pytest.mark.integration


def _stored(ns: Namespace) -> int:
    try:
        return int(ns.scalar("SELECT count() FROM audit.events"))
    except OSError:  # 503 while the child restarts
        return -1


def _command(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_the_worker_loads_through_its_loader_process_and_restarts_it(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)  # the default mode
    stream = [e for e, _ in generate(4_000, seed=43, attack_rate=0.01)]
    first, second = stream[:2_000], stream[2_000:]
    accepted = len({(e["account_id"], e["event_id"]) for e in stream})
    worker = Worker(ns).start()
    try:
        assert worker.proc is not None
        status, body = health(ns)
        assert status == 200 and body["warehouse_loader"] == "process", body
        child = body["loader_process"]
        assert child["status"] == "running" and child["restarts"] == 0, child
        first_pid = child["pid"]
        assert running(first_pid) and parent_of(first_pid) == worker.proc.pid
        assert "loader" in _command(first_pid) and "--socket" in _command(first_pid)

        ns.send(first)
        wait_for(lambda: _stored(ns) >= 1_000, 180, "the loader process to store entries")
        os.kill(first_pid, signal.SIGKILL)  # mid-load: its batch in hand was not committed
        ns.send(second)
        seen: list[tuple[int, dict[str, Any]]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status, body = health(ns)
            seen.append((status, body))
            process = body["loader_process"]
            if process["status"] == "running" and process["pid"] != first_pid and status == 200:
                break
            time.sleep(0.05)
        restarting = [(s, b) for s, b in seen if b["loader_process"]["status"] == "restarting"]
        assert restarting, [b["loader_process"] for _, b in seen[-3:]]  # health said so ...
        status, down = restarting[0]
        assert status == 503 and down["status"] == "degraded", down
        assert "SIGKILL" in down["warehouse_error"], down
        process = seen[-1][1]["loader_process"]  # ... and runs again, with a new child
        assert seen[-1][0] == 200 and process["restarts"] == 1, seen[-1]
        assert running(process["pid"]) and not running(first_pid)
        assert metric(ns.port, "pw_loader_process_restarts_total") == 1

        wait_for(lambda: _stored(ns) >= accepted, 240, "every entry stored")
        time.sleep(2)  # nothing more arrives: not one row twice
        assert _stored(ns) == accepted
        assert int(ns.scalar("SELECT uniqExact(account_id, seq) FROM audit.events")) == accepted
        # the worker's /metrics shows the child's loader figures (the new child's own count)
        assert metric(ns.port, "pw_warehouse_batch_rows_count") >= 1
        assert ns.scalar("SELECT count() FROM audit.alerts") > 0

        child_pid = process["pid"]
        folder = Path(_command(child_pid)[_command(child_pid).index("--socket") + 1]).parent
        assert folder.stat().st_mode & 0o777 == 0o700
        worker.stop()  # SIGTERM: the worker stops its child, which commits and exits
        assert worker.proc.returncode == 0, worker.log_tail()
        assert not running(child_pid) and not folder.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):  # its process group, the child included
            worker.kill()
    wh = EmbeddedWarehouse(ns.settings.warehouse_path)  # the folder is free again
    try:
        total, unique = (
            int(v)
            for v in wh.query("SELECT count(), uniqExact(account_id, seq) FROM audit.events").rows[
                0
            ]
        )
        assert (total, unique) == (accepted, accepted)
        for (account,) in wh.query("SELECT DISTINCT account_id FROM audit.events").rows:
            assert verify_stored(wh.query(CHAIN_QUERY, {"account": account}).rows) is None, account
    finally:
        wh.close()


def test_the_loader_process_ends_with_a_worker_killed_alone(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    try:
        assert worker.proc is not None
        child = health(ns)[1]["loader_process"]["pid"]
        assert running(child)
        os.kill(worker.proc.pid, signal.SIGKILL)  # the worker alone, not its process group
        worker.proc.wait(30)
        wait_for(lambda: not running(child), 30, "the orphaned loader process to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
    again = Worker(ns).start()  # its own child opens the folder the orphan let go
    try:
        wait_for(lambda: health(ns)[0] == 200, 60, "the next worker's loader process")
        assert _stored(ns) == 0
    finally:
        again.stop()
