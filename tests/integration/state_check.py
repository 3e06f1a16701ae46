"""The worker's detection state, read from Kafka, against the state rebuilt from the ledger.

The worker's tables are read from their changelog topics (committed records only, the latest
value per key), which is what the next recovery restores; the expected state is every ledger
entry folded from scratch through `detectors.run.apply_entry`, the worker's own fold. Both are
read once the worker has sequenced every source message (`caught_up`). The changelogs trail the
ledger: a partition writes the states its events changed every `PW_STATE_CHECKPOINT_SECONDS` (also
when no more records come), so a comparison is repeated until they match or `SETTLE_SECONDS` pass
(`StateReader.settled_differences`); what differs then is reported.

States are compared whole (never by detector key), after a JSON round trip as the changelog does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from detectors.run import apply_entry, new_state
from partnerwatch.local_worker import Namespace
from pipeline.config import DetectionConfig, Settings

TABLES = ("account_state", "open_alerts")
#: How long the changelogs may take to match the ledger once it is caught up (a checkpoint is
#: due every second by default; a worker just started loads and checks its partitions first).
SETTLE_SECONDS = 30.0


class CommittedReader:
    """The committed records of one topic, read incrementally: each `new()` returns the records
    committed since the last call, up to each partition's last stable offset. Records below a
    last stable offset are final (compaction only drops a record a later one of its key
    supersedes), so the records read so far plus `new()` give what a read from the beginning
    gives: every ledger entry of an uncompacted ledger, the latest value of every changelog key.
    The restart storm reads its growing topics so every round."""

    def __init__(self, ns: Namespace, topic: str) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=ns.settings.kafka_broker,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self.tps = [
            TopicPartition(topic, p)
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        if self.tps:
            self.consumer.assign(self.tps)
            self.consumer.seek_to_beginning(*self.tps)

    def new(self) -> list[Any]:
        if not self.tps:
            return []
        out: list[Any] = []
        ends = self.consumer.end_offsets(self.tps)  # read_committed: the last stable offsets
        pending = {tp for tp in self.tps if ends[tp] > self.consumer.position(tp)}
        while pending:
            for tp, records in self.consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset < ends[tp]:
                        out.append(record)
                    else:  # past this read's end: read again from here next time
                        self.consumer.seek(tp, ends[tp])
                        break
            pending = {tp for tp in pending if self.consumer.position(tp) < ends[tp]}
        out.sort(key=lambda r: (r.partition, r.offset))  # partition by partition, in order
        return out

    def close(self) -> None:
        self.consumer.close()


def committed(ns: Namespace, topic: str) -> Iterator[Any]:
    """Every committed record of `topic`, partition by partition, up to its last stable offset."""
    reader = CommittedReader(ns, topic)
    try:
        yield from reader.new()
    finally:
        reader.close()


def caught_up(ns: Namespace) -> bool:
    """Every message on the actions topic is sequenced: on each partition, the last committed
    ledger entry records the source offset of the partition's last message.

    (The ledger says where sequencing stands, streams/ingest.py; the worker group's committed
    offset may lag: Faust commits a partition only up to the first offset its stream did not
    deliver, and source messages the stream skipped are sequenced by ingest's catch-up. Every
    message of the restart tests is a new event, so every one has its entry.)
    """
    settings = ns.settings
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_broker,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    try:
        sources = [
            TopicPartition(settings.actions_topic, p)
            for p in consumer.partitions_for_topic(settings.actions_topic) or ()
        ]
        ends = consumer.end_offsets(sources)
        for source in sources:
            if ends[source] == 0:
                continue
            tp = TopicPartition(settings.ledger_topic, source.partition)
            consumer.assign([tp])
            last = consumer.end_offsets([tp])[tp]  # the last stable offset
            consumer.seek(tp, max(0, last - 64))  # the tail: entries and commit markers
            sequenced = -1
            while consumer.position(tp) < last:
                for record in consumer.poll(timeout_ms=1000).get(tp, ()):
                    if record.offset < last:
                        sequenced = max(
                            sequenced, int(orjson.loads(record.value).get("ingest_offset", -1))
                        )
            if sequenced < ends[source] - 1:
                return False
        return True
    finally:
        consumer.close()


def changelog_name(ns: Namespace, table: str) -> str:
    return f"{ns.settings.app_id}-{table}-changelog"


class StateReader:
    """The worker's tables (from their changelogs) and the ledger's entries, each topic read
    incrementally (`CommittedReader`); the fold of the entries is always done from scratch."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.tables: dict[str, dict[str, Any]] = {table: {} for table in TABLES}
        self.by_partition: dict[int, list[dict[str, Any]]] = {}
        self.readers = {table: CommittedReader(ns, changelog_name(ns, table)) for table in TABLES}
        self.ledger: CommittedReader | None = None  # opened when the ledger is first read

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def worker_tables(self) -> dict[str, dict[str, Any]]:
        """table -> key -> latest committed value, as the worker's next recovery restores them."""
        for table, reader in self.readers.items():
            latest = self.tables[table]
            for record in reader.new():
                key = orjson.loads(record.key)
                if record.value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = orjson.loads(record.value)
        return {table: dict(latest) for table, latest in self.tables.items()}

    def ledger_entries(self) -> list[dict[str, Any]]:
        """Every committed ledger entry, partition by partition, in offset order (as a read from
        the beginning gives them)."""
        if self.ledger is None:
            self.ledger = CommittedReader(self.ns, self.ns.settings.ledger_topic)
        for record in self.ledger.new():
            self.by_partition.setdefault(record.partition, []).append(orjson.loads(record.value))
        return [e for p in sorted(self.by_partition) for e in self.by_partition[p]]

    def differences(self) -> list[str]:
        """Where the worker's tables differ from the ledger's fold: one line per differing key."""
        expected = rebuilt_tables(self.ledger_entries(), Settings.from_env(self.ns.env).detect)
        return compare(expected, self.worker_tables())

    def settled_differences(self, seconds: float = SETTLE_SECONDS) -> list[str]:
        """`differences`, again every half second until there are none or `seconds` passed."""
        deadline = time.monotonic() + seconds
        while True:
            found = self.differences()
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def close(self) -> None:
        for reader in (*self.readers.values(), self.ledger):
            if reader is not None:
                reader.close()


def worker_tables(ns: Namespace) -> dict[str, dict[str, Any]]:
    """table -> key -> latest committed value, as the worker's next recovery restores them."""
    with StateReader(ns) as reader:
        return reader.worker_tables()


def ledger_entries(ns: Namespace) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in committed(ns, ns.settings.ledger_topic)]


def rebuilt_tables(
    entries: list[dict[str, Any]], config: DetectionConfig | None = None
) -> dict[str, dict[str, Any]]:
    """Both tables as folding `entries` (each account's in seq order) from empty states gives."""
    config = config or Settings.from_env({}).detect
    states: dict[str, dict[str, Any]] = {}
    alerts: dict[str, Any] = {}
    for entry in entries:
        state = states.setdefault(entry["account_id"], new_state())
        applied = apply_entry(state, entry, config, None, alerts.get)
        assert applied is not None, (
            f"ledger entry out of order: {entry['account_id']} seq {entry['seq']}"
        )
        for alert in applied.alerts:
            alerts[alert["alert_id"]] = alert
        for key in applied.closed:
            alerts.pop(key, None)
    as_stored = orjson.loads(
        orjson.dumps(
            {"account_state": states, "open_alerts": alerts}, option=orjson.OPT_NON_STR_KEYS
        )
    )
    return dict(as_stored)


def differences(ns: Namespace) -> list[str]:
    """Where the worker's tables differ from the ledger's fold once they settled
    (`StateReader.settled_differences`): one line per differing key."""
    with StateReader(ns) as reader:
        return reader.settled_differences()


def compare(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for table in TABLES:
        want, got = expected[table], actual[table]
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                out.append(f"{table}[{key}]: {_describe(want.get(key), got.get(key))}")
    return out


def _describe(want: Any, got: Any) -> str:
    if got is None:
        return "missing in the worker's table"
    if want is None:
        return "in the worker's table, not in the ledger"
    if isinstance(want, dict) and isinstance(got, dict):
        keys = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        return f"differs in {keys} (seq {got.get('seq')} vs ledger's {want.get('seq')})"
    return "differs"
