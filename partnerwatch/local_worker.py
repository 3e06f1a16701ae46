"""Run the real worker against the local broker in an isolated namespace (tests, evaluation, benchmarks).

Each `Namespace` gets its own topic prefix, app id (consumer groups, changelogs), data folder
(embedded warehouse) and web port, so runs never see each other's events.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.common import post_sql, worker_health
from pipeline.config import Settings, checkout
from sinks.kafka_io import consumer as kafka_consumer
from sinks.kafka_io import ensure_topics, send_events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The names of the namespaces this process made, in order (the tests' fixtures delete their
#: topics when a test module ends, so the one broker does not grow by thousands of topics).
CREATED: list[str] = []


@dataclass
class Namespace:
    root: Path
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        CREATED.append(self.name)

    @property
    def env(self) -> dict[str, str]:
        # Nothing of the caller's PW_* settings but the broker's address (the one shared broker).
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("PW_") or k == "PW_KAFKA_BROKER"
        }
        env.update(
            {
                "PW_TOPIC_PREFIX": f"t{self.name}.",
                "PW_APP_ID": f"pw-test-{self.name}",
                "PW_DATA_DIR": str(self.root / self.name),
                "PW_WEB_PORT": str(self.port),
                "PW_WAREHOUSE_BATCH_SECONDS": "0.5",
                "PW_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def send(self, events: Iterable[dict[str, Any] | bytes]) -> int:
        ensure_topics(self.settings)
        sent = 0
        for count in send_events(self.settings, events):
            sent = count
        return sent

    def sql(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        body = orjson.dumps({"query": query, "params": params or {}})
        headers = {"Content-Type": "application/json"}
        token = self.env.get("PW_API_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with post_sql(
            f"http://127.0.0.1:{self.port}/v1/sql", timeout=60, data=body, headers=headers
        ) as response:
            return list(orjson.loads(response.read())["rows"])

    def scalar(self, query: str, params: dict[str, Any] | None = None) -> Any:
        return self.sql(query, params)[0][0]

    def read_topic(self, topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
        """Read committed records of `topic` from the start until `expect` arrive or time runs out."""
        consumer = kafka_consumer(
            self.settings, topic, role="topic-reader", consumer_timeout_ms=2000
        )
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < expect and time.monotonic() < deadline:
                records.extend(consumer)
        finally:
            consumer.close()
        return records


def delete_namespace_topics(broker_settings: Settings, names: Iterable[str]) -> list[str]:
    """Delete every topic of these namespaces (their `t<name>.` topics and the `pw-test-<name>-`
    changelogs); return the deleted names. Nothing else on the broker is touched."""
    from kafka.errors import KafkaError, UnknownTopicOrPartitionError

    from sinks.kafka_io import admin

    marks = tuple(m for n in names for m in (f"t{n}.", f"pw-test-{n}-"))
    if not marks:
        return []
    client = admin(broker_settings, role="test-cleanup")
    try:
        doomed = [t for t in client.list_topics() if t.startswith(marks)]
        for i in range(0, len(doomed), 100):
            try:
                client.delete_topics(doomed[i : i + 100], timeout_ms=30_000)
            except UnknownTopicOrPartitionError:
                pass
            except KafkaError:  # best effort: a leftover topic costs the broker, not a result
                continue
        return doomed
    finally:
        client.close()


class Worker:
    """`partnerwatch worker` as a child process."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.log_path = ns.root / f"{ns.name}-worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> Worker:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "partnerwatch", "worker"],
                env=self.ns.env,
                # in a checkout, its code (`-m` imports from the working directory); installed, the package
                cwd=checkout() or self.ns.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early: {self.log_tail()}")
            health = worker_health(f"http://127.0.0.1:{self.ns.port}")
            if (
                health
                and health.get("warehouse_error") != "starting"
                and health.get("http_ingest") == "ready"
            ):
                return self
            time.sleep(0.1)
        raise AssertionError(f"worker not ready in {timeout}s: {self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> None:
        if not self.alive() or self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Loader(Worker):
    """`partnerwatch loader` as a child process, in the namespace with `env` on top (e.g. its own
    PW_LOADER_PORT); ready when its /v1/health answers."""

    def __init__(self, ns: Namespace, env: dict[str, str] | None = None) -> None:
        super().__init__(ns)
        self.env = {**ns.env, **(env or {})}
        self.port = int(self.env.get("PW_LOADER_PORT", "6067"))
        self.log_path = ns.root / f"{ns.name}-loader.log"

    def start(self, timeout: float = 120.0) -> Loader:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "partnerwatch", "loader"],
                env=self.env,
                cwd=checkout() or self.ns.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"loader exited early: {self.log_tail()}")
            if self.health().get("status") == "ok":
                return self
            time.sleep(0.5)
        raise AssertionError(f"loader not ready in {timeout}s: {self.log_tail()}")

    def health(self) -> dict[str, Any]:
        """Its GET /v1/health document ({} while it does not answer); 503 carries one too."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/v1/health", timeout=10
            ) as response:
                return dict(orjson.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return dict(orjson.loads(exc.read()))
        except (OSError, ValueError):
            return {}


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def consumed_all(settings: Settings, group: str, topic: str) -> bool:
    """`group` has committed every record of `topic` (a non-transactional topic: its end offsets)."""
    from kafka import TopicPartition

    from sinks.kafka_io import admin as kafka_admin

    admin = kafka_admin(settings, role="offset-reader")
    consumer = kafka_consumer(settings, role="offset-reader")
    try:
        committed = admin.list_group_offsets({group: None})[group]
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = consumer.end_offsets(parts)
        return all(
            tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end > 0
        )
    finally:
        admin.close()
        consumer.close()


def settled_alerts(ns: Any, timeout: float = 600.0) -> dict[str, dict[str, Any]]:
    """The latest version of every alert on the alerts topic, once the worker has committed every
    action sent: the ingest service publishes an event's alerts before its offset commits, so the
    topic then holds them all, and it is read to its end offsets (no quiet window)."""
    from kafka import TopicPartition

    settings = ns.settings
    wait_for(
        lambda: consumed_all(settings, settings.ingest_group, settings.actions_topic),
        timeout,
        "every action committed",
    )
    consumer = kafka_consumer(settings, role="alert-reader")
    latest: dict[str, dict[str, Any]] = {}
    try:
        parts = [
            TopicPartition(settings.alerts_topic, p)
            for p in consumer.partitions_for_topic(settings.alerts_topic) or []
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"the alerts topic was not read to its end in {timeout}s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    alert = orjson.loads(record.value)
                    seen = latest.get(alert["alert_id"])
                    if seen is None or alert["count"] >= seen["count"]:
                        latest[alert["alert_id"]] = alert
    finally:
        consumer.close()
    return latest
