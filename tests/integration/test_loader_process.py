"""`partnerwatch loader`, the warehouse loader as a process of its own, and the worker without it.

- With PW_WAREHOUSE_LOADER=external the worker does not load the warehouse (its consumer group
  never commits), its /v1/health says so, and `partnerwatch loader` loads what the worker
  sequenced: every entry once, chains intact, with its own /v1/health and /metrics.
- The worker refuses `external` with the embedded warehouse: chDB opens a folder in one process
  only, even read-only (tested here), and the worker needs it for /v1/sql, alert actions, digests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import orjson
import pytest

from partnerwatch.common import worker_health
from partnerwatch.local_worker import Loader, Namespace, Worker, free_port, wait_for
from pipeline.config import checkout
from pipeline.ledger import CHAIN_QUERY, verify_stored
from pipeline.simulation.traffic import generate
from sinks import kafka_io
from sinks.clickhouse import EmbeddedWarehouse

pytestmark = pytest.mark.integration


def committed(ns: Namespace, topic: str) -> dict[int, int]:
    admin = kafka_io.admin(ns.settings)
    try:
        group = ns.settings.warehouse_group
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        return {
            tp.partition: o.offset
            for tp, o in offsets.items()
            if tp.topic == topic and o.offset >= 0
        }
    finally:
        admin.close()


def end_offsets(ns: Namespace, topic: str) -> dict[int, int]:
    consumer = kafka_io.consumer(ns.settings, role="test-ends")
    try:
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in range(ns.settings.topic_partitions)]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items() if end}
    finally:
        consumer.close()


def metric_value(port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_chdb_opens_a_folder_in_one_process_only(tmp_path: Path) -> None:
    """The fact the design rests on: while one process has the embedded warehouse open, another
    cannot open it, not even read-only (so the worker serves SQL from the warehouse it owns)."""
    holder = textwrap.dedent(
        """
        import sys
        from chdb import session
        s = session.Session(sys.argv[1])
        s.query("CREATE DATABASE IF NOT EXISTS t")
        print("open", flush=True)
        sys.stdin.read()
        """
    )
    second = textwrap.dedent(
        """
        import sys
        from chdb import connect
        for options in ("", "?readonly=1", "?mode=ro"):
            try:
                connect(sys.argv[1] + options).close()
                print("opened", options)
            except Exception as exc:
                print("refused", options, str(exc)[:200])
        """
    )
    path = str(tmp_path / "wh")
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        out = subprocess.run(
            [sys.executable, "-c", second, path], capture_output=True, text=True, timeout=120
        ).stdout
    finally:
        proc.communicate("", timeout=60)
    assert out.count("refused") == 3, out
    # once the holder is gone, the folder opens again
    again = subprocess.run(
        [sys.executable, "-c", second, path], capture_output=True, text=True, timeout=120
    ).stdout
    assert again.count("opened") == 3, again


def test_the_worker_refuses_an_external_loader_with_the_embedded_warehouse(tmp_path: Path) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_WAREHOUSE_LOADER": "external"})
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", "worker"],
        env=ns.env,
        cwd=checkout() or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "PW_WAREHOUSE_LOADER=external needs a ClickHouse server" in done.stderr


def test_an_external_loader_process_loads_what_the_worker_sequenced(
    kafka_broker: str, tmp_path: Path
) -> None:
    # The worker "uses a server" nobody answers on (it never needs it here), so it does not hold
    # the embedded folder, which the loader process then owns.
    dead_server = f"clickhouse://default@127.0.0.1:{free_port()}/audit"
    ns = Namespace(
        tmp_path, extra_env={"PW_WAREHOUSE_LOADER": "external", "PW_CLICKHOUSE_URL": dead_server}
    )
    stream = [e for e, _ in generate(3_000, seed=41, attack_rate=0.01)]
    accepted = len({(e["account_id"], e["event_id"]) for e in stream})
    worker = Worker(ns).start()
    loader: Loader | None = None
    try:
        health = worker_health(f"http://127.0.0.1:{ns.port}")
        assert health and health["status"] == "ok" and health["warehouse_loader"] == "external", (
            health
        )
        ns.send(stream)
        ledger = ns.read_topic(ns.settings.ledger_topic, expect=accepted, timeout=180)
        assert len(ledger) == accepted
        assert committed(ns, ns.settings.ledger_topic) == {}, "the worker loaded the warehouse"

        loader = Loader(
            ns,
            {
                "PW_CLICKHOUSE_URL": "",
                "PW_LOADER_PORT": str(free_port()),
                "PW_MALLOC_TRIM_SECONDS": "0.5",
            },
        ).start()
        wait_for(
            lambda: loader is not None and loader.health().get("stored_events") == accepted,
            180,
            "the loader to store every entry",
        )
        # and every alert: its commit reaches the last record (a transaction marker may follow it)
        alert_ends = end_offsets(ns, ns.settings.alerts_topic)
        wait_for(
            lambda: all(
                committed(ns, ns.settings.alerts_topic).get(p, 0) >= end - 1
                for p, end in alert_ends.items()
            ),
            120,
            "the loader to commit every alert",
        )
        doc = loader.health()
        assert (
            doc["status"],
            doc["warehouse_loader"],
            doc["loader_crashes"],
            doc["skipped_stored"],
        ) == ("ok", "external", 0, 0)
        assert (
            metric_value(loader.port, 'pw_warehouse_rows_total{table="audit.events"}') == accepted
        )
        assert metric_value(loader.port, "pw_warehouse_batch_rows_count") >= 1
        # it hands freed heap memory back, as the worker does (streams/trim_thread.py)
        wait_for(
            lambda: loader is not None and metric_value(loader.port, "pw_heap_trims_total") >= 2,
            30,
            "the loader to trim its heap",
        )
        loader.stop()
        assert loader.proc is not None and loader.proc.returncode == 0, loader.log_tail()
    finally:
        if loader is not None:
            loader.stop()
        worker.stop()
    wh = EmbeddedWarehouse(ns.settings.warehouse_path)
    try:
        total, unique = (
            int(v)
            for v in wh.query("SELECT count(), uniqExact(account_id, seq) FROM audit.events").rows[
                0
            ]
        )
        assert (total, unique) == (accepted, accepted)
        accounts = [r[0] for r in wh.query("SELECT DISTINCT account_id FROM audit.events").rows]
        for account in accounts:
            assert verify_stored(wh.query(CHAIN_QUERY, {"account": account}).rows) is None, account
        on_topic = {
            orjson.loads(r.value)["alert_id"]
            for r in ns.read_topic(ns.settings.alerts_topic, 10**9, timeout=8)
        }
        assert on_topic  # the stream carries attacks
        assert {
            r[0] for r in wh.query("SELECT DISTINCT alert_id FROM audit.alerts").rows
        } == on_topic
    finally:
        wh.close()
