"""The pipeline on a 3-node KRaft Kafka cluster: one broker SIGKILLed under load, later restarted.

Topics with replication factor 3 and min.insync.replicas 2 (PW_TOPIC_REPLICATION,
PW_TOPIC_MIN_INSYNC; the cluster's own internal topics the same). 9,000 events: 4,000 sent
while the worker runs; once 1,000 are stored, the leader of the busiest actions partition is killed with
SIGKILL; 3,000 more are sent and stored with that broker down; it is started again and the last
2,000 are sent, plus 300 of the first redelivered. End: exactly 9,000 events stored once, every
chain verifies, every alert of the replay once, and the worker never stopped.
"""

from __future__ import annotations

import collections
import re
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.reliability.harness import Sender, assert_exact, stored
from tests.reliability.kraft_cluster import PartitionState, kraft_cluster

# integration: three brokers of its own, beside the shared one (make test runs it with the broker's tests)
pytestmark = [pytest.mark.reliability, pytest.mark.integration]

EVENTS = 9_000


def leaders(parts: dict[tuple[str, int], PartitionState], topic: str) -> list[int]:
    return [state.leader for (name, _), state in sorted(parts.items()) if name == topic]


def records_per_partition(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    """(end offset, partition) of each partition of `topic`."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return [(end, tp.partition) for tp, end in consumer.end_offsets(parts).items()]
    finally:
        consumer.close()


def complaints(log: str) -> collections.Counter[str]:
    """The worker's warning and error lines, counted by logger and the start of the message."""
    found: collections.Counter[str] = collections.Counter()
    for m in re.finditer(r"\[(?:warning|error)\s*\] (.*?)\s*\[([\w.]+)\]\s*(?:\S+=|$)", log, re.M):
        words = re.sub(r"\d+", "N", m.group(1)).split()[:5]
        found[f"{m.group(2)}: {' '.join(words)}"] += 1
    return found


def test_a_broker_killed_and_restarted_under_load_on_a_three_node_cluster(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    stream = [e for e, _ in generate(EVENTS, seed=67, accounts=24, attack_rate=0.004)]
    with kraft_cluster(tmp_path / "kafka", replication=3, min_insync=2) as cluster:
        cluster_up = time.monotonic() - began
        ns = Namespace(
            tmp_path,
            extra_env={
                "PW_KAFKA_BROKER": cluster.bootstrap,
                "PW_TOPIC_REPLICATION": "3",
                "PW_TOPIC_MIN_INSYNC": "2",
            },
        )
        s = ns.settings
        pipeline_topics = [*s.pipeline_topics, *s.state_topics]
        worker = Worker(ns).start()
        try:
            first = Sender(ns, stream[:4_000], chunk=250, pause=0.2)
            first.start()
            wait_for(lambda: stored(ns) >= 1_000, 120, "1,000 stored events")
            # Every topic in use, the cluster's own too, is on all three brokers and wants two
            # replicas in sync for a write.
            internal = ["__consumer_offsets", "__transaction_state"]
            before = cluster.partitions(*pipeline_topics, *internal)
            assert {name for name, _ in before} == {*pipeline_topics, *internal}
            assert {st.replicas for st in before.values()} == {(1, 2, 3)}
            assert cluster.topic_config(s.actions_topic, "min.insync.replicas") == (
                "2",
                "DYNAMIC_TOPIC_CONFIG",
            )
            for topic in internal:
                assert cluster.topic_config(topic, "min.insync.replicas")[0] == "2"
            # The victim: the leader of the actions partition with the most records so far.
            records, busiest = max(records_per_partition(cluster.bootstrap, s.actions_topic))
            victim = before[(s.actions_topic, busiest)].leader
            at_kill, sent_at_kill = stored(ns), first.sent
            cluster.nodes[victim].kill()
            killed_at = time.monotonic()

            # Leadership moves to the two that are left; writes need two in sync: they have it.
            def failed_over() -> bool:
                return all(
                    st.leader not in (victim, -1) and victim not in st.isr
                    for st in cluster.partitions(*pipeline_topics).values()
                )

            wait_for(failed_over, 60, f"every partition led by a live broker (node {victim} dead)")
            failover_s = time.monotonic() - killed_at
            after_kill = cluster.partitions(*pipeline_topics)
            first.join(120)
            assert not first.is_alive() and first.error is None, first.trace
            ns.send(stream[4_000:7_000])  # all of these while the broker is down
            wait_for(lambda: stored(ns) >= 7_000, 180, "7,000 stored with a broker down")
            assert worker.alive(), worker.log_tail()
            at_restart = stored(ns)

            cluster.nodes[victim].start()
            last = Sender(ns, stream[7_000:], chunk=250, pause=0.2)
            last.start()

            def back_in_sync() -> bool:
                return all(len(st.isr) == 3 for st in cluster.partitions(*pipeline_topics).values())

            wait_for(back_in_sync, 120, f"node {victim} back in every in-sync replica set")
            last.join(120)
            assert not last.is_alive() and last.error is None, last.trace
            ns.send(stream[:300])  # a gateway's redelivery after the outage
            wait_for(lambda: stored(ns) >= EVENTS, 180, f"{EVENTS:,} stored events")
            figures = assert_exact(ns, EVENTS, stream)
            assert worker.alive(), worker.log_tail()
            assert first.sent + 3_000 + last.sent == EVENTS

            after_restart = cluster.partitions(*pipeline_topics)
            warnings = complaints(worker.log_path.read_text(errors="replace"))
            print(
                f"\n3-node cluster up in {cluster_up:.1f}s; killed node {victim} (leader of "
                f"actions[{busiest}], {records} records) at {at_kill} stored / {sent_at_kill} "
                f"sent; every "
                f"partition led by a live broker {failover_s:.1f}s later; {at_restart} stored "
                f"before the restart; end {figures}\n"
                f"actions leaders before/after kill/after restart: "
                f"{leaders(before, s.actions_topic)} / {leaders(after_kill, s.actions_topic)} / "
                f"{leaders(after_restart, s.actions_topic)}\n"
                f"worker warnings and errors: {warnings.most_common(12) or 'none'}\n"
                f"test time so far {time.monotonic() - began:.1f}s"
            )
        finally:
            worker.stop()
