"""The command line against a real worker: send a file, query through the worker, verify chains,
and detect tampering once the worker is stopped and the warehouse is opened directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import generate
from sinks.clickhouse import EmbeddedWarehouse

pytestmark = pytest.mark.integration


def cli(ns: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=ns.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_send_sql_and_verify_chain_then_tampering_is_detected(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    events = [e for e, _ in generate(300, seed=41)]
    jsonl = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in events]
    lines.insert(10, b'{"event_id": "broken"')  # not JSON
    lines.insert(20, orjson.dumps({**events[0], "action": "listing.explode"}))
    jsonl.write_bytes(b"\n".join(lines) + b"\n")

    worker = Worker(ns).start()
    try:
        sent = cli(ns, "send", str(jsonl))
        assert sent.returncode == 0, sent.stderr
        assert "sent 302 messages" in sent.stderr and "2 of them fail validation" in sent.stderr
        wait_for(lambda: ns.scalar("SELECT count() FROM audit.events") >= 300, 120, "300 stored")
        dead = ns.read_topic(ns.settings.deadletter_topic, expect=2)
        assert sorted(orjson.loads(r.value)["reason"] for r in dead) == [
            "not_json",
            "unknown_action",
        ]

        # `partnerwatch sql` answers through the running worker (it owns the embedded engine).
        query = cli(
            ns,
            "sql",
            "SELECT count() AS n FROM audit.events WHERE action = {a:String}",
            "-p",
            "a=permission.grant",
            "--format",
            "json",
        )
        assert query.returncode == 0, query.stderr
        grants = sum(1 for e in events if e["action"] == "permission.grant")
        assert orjson.loads(query.stdout) == {"n": grants}
        verified = cli(ns, "verify-chain")
        assert verified.returncode == 0, verified.stderr
        assert "no break" in verified.stdout
    finally:
        worker.stop()

    # Worker stopped: the CLI opens the warehouse itself. Tamper with one stored event.
    victim = events[150]["event_id"]
    warehouse = EmbeddedWarehouse(ns.settings.warehouse_path)
    try:
        warehouse.execute(
            "ALTER TABLE audit.events UPDATE payload = concat(payload, ' ')"
            " WHERE event_id = {id:String} SETTINGS mutations_sync = 1",
            {"id": victim},
        )
        account, seq = warehouse.query(
            "SELECT account_id, seq FROM audit.events WHERE event_id = {id:String}", {"id": victim}
        ).rows[0]
    finally:
        warehouse.close()
    broken = cli(ns, "verify-chain", "--account", account)
    assert broken.returncode == 1
    assert f"seq {seq} (event {victim})" in broken.stderr.replace("\n", "")
