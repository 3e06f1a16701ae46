"""The warehouse's owner killed under a steady stream, and the embedded warehouse's disk full.

- The worker (owner of the embedded warehouse) is SIGKILLed twice at seeded random points while
  a sender keeps producing 8,000 events (with redeliveries), and restarted each time. This
  extends tests/integration/test_restart.py (phased sends) with events in flight during the kill
  and the alert check.
- The warehouse folder on a 64 MiB tmpfs, filled while 4,000 events arrive (then 20,000 more):
  /v1/health reports the error, the loader's offsets stay where they were, the worker's memory
  stays bounded (the loader stops fetching, Kafka holds the backlog); space returns and
  everything is stored exactly once. Needs root or passwordless sudo to mount; skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import random
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from sinks import kafka_io
from tests.integration.settle import sequenced
from tests.reliability.harness import Sender, assert_exact, rss_mb, stored

pytestmark = pytest.mark.reliability


def test_worker_killed_twice_while_events_flow(kafka_broker: str, tmp_path: Path) -> None:
    rng = random.Random(20261126)
    stream = [e for e, _ in generate(8_000, seed=71, attack_rate=0.004)]
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    sender = Sender(ns, stream + stream[2_000:2_500], chunk=100, pause=0.3)
    kills = []
    try:
        sender.start()
        for _ in range(2):
            floor = min(stored(ns) + rng.randint(300, 2_000), 7_500)
            wait_for(lambda f=floor: stored(ns) >= f, 240, "rows stored before a kill")
            kills.append({"stored": stored(ns), "sent": sender.sent})
            worker.kill()
            time.sleep(rng.uniform(0.5, 3.0))
            worker = Worker(ns).start()
        sender.join(300)
        assert sender.error is None and sender.sent == 8_500
        wait_for(lambda: stored(ns) >= 8_000, 300, "8,000 stored events")
        figures = assert_exact(ns, 8_000, stream)
        print(f"worker SIGKILL x2 under flow: at each kill {kills}, end {figures}")
    finally:
        worker.stop()


# -- disk full ----------------------------------------------------------------------------------


def _privileged(*cmd: str) -> list[str]:
    return list(cmd) if os.geteuid() == 0 else ["sudo", "-n", *cmd]


def _can_mount() -> str:
    """Empty when a tmpfs can be mounted here, else why not."""
    if (
        os.geteuid() != 0
        and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0
    ):
        return "mounting a tmpfs needs root or passwordless sudo"
    return ""


def _health(ns: Namespace) -> dict[str, object]:
    """GET /v1/health's document; "degraded" answers 503, which must carry the same document."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/v1/health", timeout=10) as r:
            doc = dict(orjson.loads(r.read()))
            assert doc["status"] == "ok", doc
    except urllib.error.HTTPError as exc:
        assert exc.code == 503, exc.code
        doc = dict(orjson.loads(exc.read()))
        assert doc["status"] != "ok", doc
    return doc


def _loader_offsets(ns: Namespace) -> int:
    admin = kafka_io.admin(ns.settings)
    try:
        group = ns.settings.warehouse_group
        offsets = admin.list_group_offsets({group: None})[group]
        return sum(o.offset for tp, o in offsets.items() if tp.topic == ns.settings.ledger_topic)
    finally:
        admin.close()


def _fill(path: Path) -> Path:
    filler = path / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_embedded_warehouse_disk_full_holds_offsets_and_resumes(
    kafka_broker: str, tmp_path: Path
) -> None:
    why = _can_mount()
    if why:
        pytest.skip(why)
    ns = Namespace(tmp_path)
    mount = ns.settings.warehouse_path
    mount.mkdir(parents=True)
    subprocess.run(
        _privileged("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)), check=True
    )
    worker = Worker(ns)
    try:
        worker.start()
        assert worker.proc is not None
        first = [e for e, _ in generate(24_000, seed=81, attack_rate=0.002)]
        ns.send(first[:1_000])
        wait_for(lambda: stored(ns) >= 1_000, 120, "1,000 stored before the disk fills")
        filler = _fill(mount)
        ns.send(first[1_000:5_000])
        wait_for(
            lambda: _health(ns)["status"] == "degraded", 120, "/v1/health to report the full disk"
        )
        health = _health(ns)
        error = str(health["warehouse_error"]).lower()
        assert "space" in error or "disk" in error, health
        held_stored, held_offsets = stored(ns), _loader_offsets(ns)
        rss_before = rss_mb(worker.proc.pid)
        ns.send(first[5_000:])  # 19,000 more while the disk is full
        samples: list[float] = []
        pid = worker.proc.pid

        def all_sequenced() -> bool:
            samples.append(rss_mb(pid))
            return sequenced(ns)

        # the backlog is sequenced into the ledger (Kafka) while the loader holds its batch
        wait_for(
            all_sequenced, 300, "the 24,000 events sequenced while the disk is full", interval=1.5
        )
        assert worker.alive()
        assert (
            stored(ns) == held_stored and _loader_offsets(ns) == held_offsets
        )  # nothing committed
        assert "No space left" in worker.log_path.read_text(
            errors="replace"
        ) or "space" in worker.log_tail(200)
        growth = max(samples) - rss_before
        assert growth < 200, f"RSS grew {growth:.0f} MiB while the warehouse was down: {samples}"

        filler.unlink()  # space returns
        wait_for(lambda: stored(ns) >= 24_000, 420, "24,000 stored after space returned")
        wait_for(lambda: _health(ns)["status"] == "ok", 60, "/v1/health back to ok")
        figures = assert_exact(ns, 24_000, first)
        print(
            f"disk full: stored while full {held_stored}, loader offsets held at {held_offsets}, "
            f"error {health['warehouse_error']!r:.160}, RSS {rss_before:.0f} MiB -> max {max(samples):.0f} MiB "
            f"with 19,000 more events in the backlog, end {figures}"
        )
    finally:
        worker.stop()
        subprocess.run(_privileged("umount", "-l", str(mount)), check=False)
