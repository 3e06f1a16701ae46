"""Shared pieces of the fault tests: a private Kafka broker, exact end checks, a steady sender, RSS."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.common import KAFKA_SH
from partnerwatch.local_worker import Namespace, free_port
from pipeline.config import REPO_ROOT
from tests.integration.settle import read_to_end, wait_settled
from tests.integration.test_pipeline import assert_chains_verify


def kafka_libs() -> Path:
    """The broker jars the project's runner fetched (the shared cache's, as kafka.sh finds them)."""
    version = subprocess.run(
        [
            "sed",
            "-n",
            r"s:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p",
            str(KAFKA_SH.parent / "pom.xml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shared = Path(os.environ.get("PW_KAFKA_HOME", REPO_ROOT / ".cache" / "kafka"))
    return shared / version / "libs"


class PrivateBroker:
    """A second single-node broker on free ports, in a folder of its own, reusing the fetched jars.

    Only this broker is ever stopped: other tests and helpers share the one on 9092.
    """

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "PW_KAFKA_HOME": str(home),
            "PW_KAFKA_LIBS": str(kafka_libs()),
            "PW_KAFKA_BROKER": f"127.0.0.1:{self.port}",
            "PW_KAFKA_CONTROLLER_PORT": str(free_port()),
            "PW_KAFKA_HEAP": "384m",
        }
        self.address = f"127.0.0.1:{self.port}"

    def _run(self, action: str) -> None:
        subprocess.run(["bash", str(KAFKA_SH), action], env=self.env, check=True, timeout=180)

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")


@contextmanager
def private_broker(home: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(home)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def stored(ns: Namespace) -> int:
    return int(ns.scalar("SELECT count() FROM audit.events"))


def expected_alert_ids(stream: Sequence[dict[str, Any]]) -> set[str]:
    """The alert ids a replay of `stream` (in order, masked as ingest does) through the detectors gives."""
    from detectors.run import new_state, observe
    from pipeline.alert import alert_id
    from pipeline.config import Settings
    from pipeline.event import normalize
    from pipeline.masking import Masker

    config, masker = Settings.from_env().detect, Masker("")
    states: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for raw in stream:
        event = masker.mask_event(normalize(raw))
        if (event["account_id"], event["event_id"]) in seen:
            continue
        seen.add((event["account_id"], event["event_id"]))
        for f in observe(states.setdefault(event["account_id"], new_state()), event, config):
            ids.add(alert_id(f.detector, f.key, f.window))
    return ids


def assert_exact(
    ns: Namespace, expected: int, stream: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Every accepted event stored once, every chain intact, every alert once: the figures seen.

    With `stream`, every alert a replay of it raises must be on the topic and in the warehouse
    (none lost); alerts beyond those are counted by detector in the figures (`extra_alerts`).
    Waits first until nothing is in flight (`wait_settled`), so the counts are final.
    """
    wait_settled(ns)
    count, unique = (
        int(v)
        for v in ns.sql("SELECT count(), uniqExact(account_id, event_id) FROM audit.events")[0]
    )
    assert (count, unique) == (expected, expected)
    assert_chains_verify(ns)
    on_topic = {
        orjson.loads(r.value)["alert_id"] for r in read_to_end(ns, ns.settings.alerts_topic)
    }
    alerts, alert_ids = (
        int(v) for v in ns.sql("SELECT count(), uniqExact(alert_id) FROM audit.alerts FINAL")[0]
    )
    stored_ids = {r[0] for r in ns.sql("SELECT DISTINCT alert_id FROM audit.alerts")}
    assert alerts == alert_ids == len(on_topic)
    assert stored_ids == on_topic
    accounts = int(ns.scalar("SELECT uniqExact(account_id) FROM audit.events"))
    figures: dict[str, Any] = {
        "events": count,
        "unique_events": unique,
        "accounts": accounts,
        "alerts": alerts,
    }
    if stream:
        replayed = expected_alert_ids(stream)
        assert replayed <= on_topic, f"{len(replayed - on_topic)} alerts of the replay missing"
        extra = ns.sql(
            "SELECT detector, uniqExact(alert_id) FROM audit.alerts WHERE alert_id NOT IN {ids:Array(String)} GROUP BY detector",
            {"ids": sorted(replayed)},
        )
        figures["replayed_alerts"] = len(replayed)
        figures["extra_alerts"] = {r[0]: int(r[1]) for r in extra}
    return figures


class Sender(threading.Thread):
    """Produces `events` steadily (chunks with pauses), so faults land while events are in flight."""

    def __init__(
        self, ns: Namespace, events: Sequence[dict[str, Any]], chunk: int = 250, pause: float = 0.2
    ) -> None:
        super().__init__(daemon=True)
        self.ns, self.events, self.chunk, self.pause = ns, events, chunk, pause
        self.sent = 0
        self.error: BaseException | None = None
        self.trace = ""  # the error's traceback, for the test's message

    def run(self) -> None:
        try:
            for i in range(0, len(self.events), self.chunk):
                self.sent += self.ns.send(self.events[i : i + self.chunk])
                time.sleep(self.pause)
        except BaseException as exc:  # reported by the test
            self.error, self.trace = exc, traceback.format_exc()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
