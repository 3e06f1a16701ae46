"""A local Kafka cluster of three KRaft nodes for the fault tests, run by the project's own runner.

Each node is `partnerwatch/kafka_runner/kafka.sh` with a home of its own (its data, log,
server.properties and pid file), its own free loopback ports and its node id among the shared
quorum voters; every node is broker and controller, and the jars are those the runner already
fetched. Internal topics get the cluster's replication factor and min.insync.replicas.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from partnerwatch.common import KAFKA_SH
from partnerwatch.local_worker import free_port, wait_for
from tests.reliability.harness import kafka_libs

T = TypeVar("T")


@dataclass(frozen=True)
class PartitionState:
    leader: int  # -1: none (no replica in sync is up)
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class Node:
    """One broker+controller of the cluster, started and stopped by the runner."""

    def __init__(self, node_id: int, home: Path, env: dict[str, str]) -> None:
        self.node_id, self.home, self.env = node_id, home, env
        self.address = env["PW_KAFKA_BROKER"]

    def launch(self) -> subprocess.Popen[str]:
        """`kafka.sh start` in the background: it returns once the node answers (which, on a
        fresh cluster, needs a quorum of the voters up)."""
        self.home.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            ["bash", str(KAFKA_SH), "start"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def start(self, timeout: float = 180.0) -> None:
        finish(self, self.launch(), timeout)

    def stop(self) -> subprocess.Popen[bytes]:
        """`kafka.sh stop` in the background (SIGTERM, SIGKILL after its grace period)."""
        return subprocess.Popen(
            ["bash", str(KAFKA_SH), "stop"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pid(self) -> int | None:
        try:
            return int((self.home / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown, no flush; the pid file stays, as after a crash."""
        pid = self.pid()
        assert pid is not None and self.alive(), f"node {self.node_id} is not running"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.alive(), 30, f"node {self.node_id} to die", interval=0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.home / "broker.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def finish(node: Node, proc: subprocess.Popen[str], timeout: float) -> None:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(
            f"node {node.node_id} did not start (kafka.sh: {out.strip()}):\n{node.log_tail()}"
        )


class KraftCluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        replication: int = 3,
        min_insync: int = 2,
        heap: str = "384m",
    ) -> None:
        ports = [(free_port(), free_port()) for _ in range(size)]
        voters = ",".join(f"{i}@127.0.0.1:{cport}" for i, (_, cport) in enumerate(ports, start=1))
        base = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
        self.nodes = {
            i: Node(
                i,
                root / f"node{i}",
                {
                    **base,
                    "PW_KAFKA_HOME": str(root / f"node{i}"),
                    "PW_KAFKA_LIBS": str(kafka_libs()),
                    "PW_KAFKA_BROKER": f"127.0.0.1:{port}",
                    "PW_KAFKA_CONTROLLER_PORT": str(cport),
                    "PW_KAFKA_NODE_ID": str(i),
                    "PW_KAFKA_QUORUM_VOTERS": voters,
                    "PW_KAFKA_REPLICATION": str(replication),
                    "PW_KAFKA_MIN_INSYNC": str(min_insync),
                    "PW_KAFKA_HEAP": heap,
                },
            )
            for i, (port, cport) in enumerate(ports, start=1)
        }
        self.bootstrap = ",".join(node.address for node in self.nodes.values())

    def start(self, timeout: float = 180.0) -> None:
        """Start every node at once (each waits for the quorum), then wait until all of them are
        registered brokers: only then can a topic get its replicas on three of them."""
        launched = [(node, node.launch()) for node in self.nodes.values()]
        for node, proc in launched:
            finish(node, proc, timeout)
        wait_for(
            lambda: self.brokers() == set(self.nodes), timeout, "every node registered as a broker"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every node that runs (at once), whatever state the test left them in."""
        procs = [node.stop() for node in self.nodes.values()]
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for node in self.nodes.values():  # the runner gave up: no broker outlives the test
            pid = node.pid()
            if pid is not None and node.alive():
                os.kill(pid, signal.SIGKILL)

    def admin(self) -> KafkaAdminClient:
        """An admin client bootstrapped from the nodes that run (a killed one refuses)."""
        live = [node.address for node in self.nodes.values() if node.alive()]
        return KafkaAdminClient(bootstrap_servers=",".join(live), request_timeout_ms=10_000)

    def ask(self, question: Callable[[KafkaAdminClient], T], timeout: float = 60.0) -> T:
        """`question(admin)`, asked again while the cluster does not answer: until the
        controller fences a killed broker, the metadata still lists it, and a request sent to
        it fails."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = self.admin()
                try:
                    return question(client)
                finally:
                    client.close()
            except (KafkaError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def brokers(self) -> set[int]:
        """The node ids of the brokers the cluster's metadata lists as registered and up."""
        try:
            cluster = self.ask(lambda client: client.describe_cluster(), timeout=0)
        except (KafkaError, OSError):  # not answering yet
            return set()
        return {int(b["broker_id"]) for b in cluster["brokers"]}

    def partitions(self, *topics: str) -> dict[tuple[str, int], PartitionState]:
        """Leader, replicas and in-sync replicas of every partition of `topics`."""
        found = {}
        for topic in self.ask(lambda client: client.describe_topics(list(topics))):
            for p in topic["partitions"]:
                found[(topic["name"], int(p["partition_index"]))] = PartitionState(
                    int(p["leader_id"]),
                    tuple(sorted(p["replica_nodes"])),
                    tuple(sorted(p["isr_nodes"])),
                )
        return found

    def topic_config(self, topic: str, name: str) -> tuple[str, str]:
        """One setting of a topic as the brokers apply it: its value and where that comes from
        (DYNAMIC_TOPIC_CONFIG: the topic's own; else a broker default)."""
        from kafka.admin import ConfigResource, ConfigResourceType

        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={name: None})
        configs = self.ask(lambda client: client.describe_configs([resource], config_filter="all"))
        entry = configs["topic"][topic][name]
        return str(entry["value"]), str(entry["config_source"])


@contextmanager
def kraft_cluster(root: Path, **options: object) -> Iterator[KraftCluster]:
    """A started cluster; every node is stopped at the end, also when starting failed."""
    cluster = KraftCluster(root, **options)  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
