"""The loader's high-water marks (issue 16): no lookup per batch, nothing lost or stored twice.

The loader runs in this process on a real embedded warehouse and the local broker, over ledger
records produced straight to the ledger topic. Faults are injected where they hurt most: a crash
half-way through an insert (part of the batch stored, no mark moved, no Kafka commit), a crash
right after an insert (all stored, nothing committed), and a rebalance while loading.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from partnerwatch.local_worker import Namespace, wait_for
from pipeline.event import format_ms, normalize
from pipeline.ledger import CHAIN_QUERY, LedgerState, encode_entry, verify_stored
from sinks.clickhouse import EmbeddedWarehouse, QueryResult, Row, WarehouseError
from sinks.kafka_io import ensure_topics
from sinks.loader_offsets import read_marks
from sinks.warehouse import InsertColumns

pytestmark = pytest.mark.integration

ACCOUNTS = [f"A{n:04d}SELLER" for n in range(12)]


def listing_event(n: int, account: str) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n}",
        "occurred_at": format_ms(1_793_599_200_000 + n * 1_000),
        "account_id": account,
        "action": "listing.update",
        "marketplace": "DE",
        "actor": {"type": "provider", "provider_id": "PLISTER", "principal_id": "svc-lister"},
        "resource": {"type": "listing", "id": f"sku-{n % 97}"},
        "changes": [{"field": "price", "old": "10.00", "new": f"{10 + n % 5}.00"}],
    }


def ledger_record(state: LedgerState, n: int, account: str) -> bytes:
    """Event `n` of `account` sequenced as ingest does: its ledger record."""
    ingested_at = format_ms(1_793_599_260_000 + n)
    sequenced = state.sequence(normalize(listing_event(n, account)), ingested_at, n)
    assert sequenced is not None
    return sequenced[1]


class Ledger:
    """Ledger records for several accounts, sequenced as ingest does, produced keyed by account:
    in the ingest service's layout (`LedgerState.sequence`, which the loader hands to ClickHouse
    as it is), or in the older one (`encode_entry`, which it decodes record by record)."""

    def __init__(self, ns: Namespace, layout: str = "ingest") -> None:
        self.ns = ns
        self.state = LedgerState(7)
        self.sent = 0
        self.layout = layout

    def produce(self, count: int) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.ns.settings.kafka_broker, acks="all", linger_ms=5
        )
        for _ in range(count):
            n = self.sent
            account = ACCOUNTS[n % len(ACCOUNTS)]
            ingested_at = format_ms(1_793_599_260_000 + n)
            if self.layout == "ingest":
                value = ledger_record(self.state, n, account)
            else:
                entry = self.state.accept(normalize(listing_event(n, account)), ingested_at)
                assert entry is not None
                value = encode_entry(entry)
            producer.send(self.ns.settings.ledger_topic, key=account.encode(), value=value)
            self.sent += 1
        producer.flush()
        producer.close()


class Faulty:
    """The real warehouse, counting lookups; the first `crashes` inserts into audit.events store
    the first `fraction` of their rows and then raise (a crash, not a WarehouseError)."""

    def __init__(self, inner: EmbeddedWarehouse, fraction: float = 1.0, crashes: int = 0) -> None:
        self.inner, self.fraction, self.crashes = inner, fraction, crashes
        self.lookups = 0
        self.raw_inserts = 0
        self.line_inserts = 0
        self.raw_broken = False
        self.kept = 0
        self.lock = threading.Lock()

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.inner.execute(sql, params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        if "event_id IN" in sql:
            with self.lock:
                self.lookups += 1
        return self.inner.query(sql, params)

    def insert(self, table: str, rows: list[Row]) -> None:
        self.inner.insert(table, rows)

    def insert_select(self, table: str, columns: Any, select: str, data: InsertColumns) -> None:
        if "throwIf" in select:
            self.raw_inserts += 1  # `store_raw`: the records as they are
            if self.raw_broken:
                raise WarehouseError("Unknown function throwIf (a server without it)")
        elif table == "audit.events":
            self.line_inserts += 1  # `store_lines`: record by record
        if table == "audit.events" and self.crashes:
            self.crashes -= 1
            rows = len(next(iter(data.values())))
            keep = self.kept = int(rows * self.fraction)
            self.inner.insert_select(table, columns, select, {k: v[:keep] for k, v in data.items()})
            raise RuntimeError(f"injected crash after storing {keep} of {rows} rows")
        self.inner.insert_select(table, columns, select, data)

    def close(self) -> None:
        self.inner.close()


def namespace(tmp_path: Path, batch_rows: int) -> Namespace:
    ns = Namespace(
        tmp_path,
        extra_env={"PW_WAREHOUSE_BATCH_ROWS": str(batch_rows), "PW_WAREHOUSE_BATCH_SECONDS": "0.3"},
    )
    ensure_topics(ns.settings)
    return ns


def count(wh: Any) -> int:
    return int(wh.query("SELECT count() FROM audit.events").rows[0][0])


def assert_exactly_once(wh: Any, expected: int, accounts: list[str] = ACCOUNTS) -> None:
    total, keys, ids = (
        int(v)
        for v in wh.query(
            "SELECT count(), uniqExact(account_id, seq), uniqExact(event_id) FROM audit.events"
        ).rows[0]
    )
    assert (total, keys, ids) == (expected, expected, expected)
    for account in accounts:
        rows = wh.query(CHAIN_QUERY, {"account": account}).rows
        assert rows and verify_stored(rows) is None, account


def load_until(settings: Any, wh: Any, done: Any, what: str) -> Any:
    """A loader run in this process until `done()` (waited for at most 120 s), then stopped."""
    from streams.warehouse_loader import WarehouseLoader

    loader = WarehouseLoader(settings, wh)
    loader.start()
    try:
        wait_for(done, 120, what, 0.2)
    finally:
        loader.stop()
    return loader


def end_offsets(ns: Namespace) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=ns.settings.kafka_broker)
    try:
        tps = [
            TopicPartition(ns.settings.ledger_topic, p) for p in range(ns.settings.topic_partitions)
        ]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items() if offset}
    finally:
        consumer.close()


@pytest.mark.parametrize("layout", ["ingest", "encode_entry"])
@pytest.mark.parametrize("fraction", [0.5, 1.0], ids=["crash-mid-insert", "crash-after-insert"])
def test_a_crash_during_or_after_an_insert_stores_each_entry_once(
    kafka_broker: str, tmp_path: Path, fraction: float, layout: str
) -> None:
    from streams.warehouse_loader import WarehouseLoader

    ns = namespace(tmp_path, batch_rows=400)
    ledger = Ledger(ns, layout)
    ledger.produce(2_000)
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"), fraction=fraction, crashes=1)
    loader = WarehouseLoader(ns.settings, wh)  # type: ignore[arg-type]
    loader.start()
    try:
        wait_for(lambda: loader.crashes == 1, 60, "the injected crash")
        ledger.produce(1_000)  # more while it restarts
        wait_for(lambda: count(wh) >= 3_000, 120, "3,000 rows stored", 0.2)
        wait_for(lambda: loader.health()[0] == "ok", 60, "the loader healthy again")
    finally:
        loader.stop()
    assert_exactly_once(wh, 3_000)
    # what the crashed batch had stored was found by the lookups after the restart, and skipped
    assert loader.skipped == wh.kept > 0
    assert {p: m.end for p, m in read_marks(wh, ns.settings.ledger_topic).items()} == end_offsets(
        ns
    )
    wh.close()


@pytest.mark.parametrize("layout", ["ingest", "encode_entry"])
def test_after_a_clean_restart_no_batch_is_looked_up(
    kafka_broker: str, tmp_path: Path, layout: str
) -> None:
    ns = namespace(tmp_path, batch_rows=300)
    ledger = Ledger(ns, layout)
    ledger.produce(1_200)
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    load_until(ns.settings, wh, lambda: count(wh) >= 1_200, "1,200 rows stored")
    ends = end_offsets(ns)
    marks = read_marks(wh, ns.settings.ledger_topic)
    assert {p: m.end for p, m in marks.items()} == ends  # one mark per partition, at its end

    wh.lookups = 0
    ledger.produce(1_500)
    second = load_until(ns.settings, wh, lambda: count(wh) >= 2_700, "2,700 rows stored")
    assert wh.lookups == 0, "a batch past the marks was looked up in audit.events"
    assert second.stored_events == 1_500 and second.skipped == 0
    # past the first batches (checked: no marks yet), ingest's records go to ClickHouse as they are
    assert (wh.raw_inserts > 0) == (layout == "ingest")
    assert_exactly_once(wh, 2_700)
    assert {p: m.end for p, m in read_marks(wh, ns.settings.ledger_topic).items()} == end_offsets(
        ns
    )
    wh.close()


def test_a_new_warehouse_takes_its_first_records_as_they_are(
    kafka_broker: str, tmp_path: Path
) -> None:
    """No mark and no event stored: the first batch of each partition is neither looked up nor
    decoded record by record (before, the first `PW_WAREHOUSE_BATCH_ROWS` offsets of each were)."""
    ns = namespace(tmp_path, batch_rows=300)
    ledger = Ledger(ns)
    ledger.produce(1_200)
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    try:
        load_until(ns.settings, wh, lambda: count(wh) >= 1_200, "1,200 rows stored")
        assert (wh.lookups, wh.line_inserts) == (0, 0)
        assert wh.raw_inserts > 1  # several batches, each partition's first among them
        assert_exactly_once(wh, 1_200)
    finally:
        wh.close()


def test_after_a_rebalance_a_partition_without_a_mark_is_looked_up(tmp_path: Path) -> None:
    """The loader's batches written straight (`_write`, as its executor thread does): in a new
    warehouse no partition's first batch is looked up, also one first seen after others were
    stored; once partitions are assigned again (another owner may have stored some), a partition
    without a mark in a warehouse that holds events is."""
    import asyncio

    from aiokafka import TopicPartition

    from streams.warehouse_batch import Batch
    from streams.warehouse_loader import WarehouseLoader

    ns = Namespace(tmp_path, extra_env={"PW_WAREHOUSE_BATCH_ROWS": "300"})  # no Kafka here
    topic = ns.settings.ledger_topic
    state = LedgerState(7)

    class Record:
        def __init__(self, offset: int, value: bytes) -> None:
            self.offset, self.value = offset, value

    def batch(partition: int, count: int) -> Batch:
        account = ACCOUNTS[partition]
        records = [
            Record(i, ledger_record(state, 1_000 * partition + i, account)) for i in range(count)
        ]
        return Batch(
            ledger=[(partition, records)],
            offsets={TopicPartition(topic, partition): count},
            first={partition: 0},
            records=count,
        )

    async def assigned(loader: WarehouseLoader, partitions: list[int]) -> None:
        loader._lock = asyncio.Lock()
        await loader.assigned([TopicPartition(topic, p) for p in partitions])

    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    try:
        loader = WarehouseLoader(ns.settings, wh)  # type: ignore[arg-type]
        asyncio.run(assigned(loader, [0, 1, 2]))
        assert loader._write(batch(0, 50)) == []
        assert loader._write(batch(1, 50)) == []  # first seen after partition 0 was stored
        assert (wh.lookups, wh.line_inserts, wh.raw_inserts) == (0, 0, 2)
        asyncio.run(assigned(loader, [2]))
        assert loader._write(batch(2, 50)) == []
        assert (wh.lookups, wh.line_inserts) == (1, 1)
        assert_exactly_once(wh, 150, ACCOUNTS[:3])
    finally:
        wh.close()


def test_events_stored_without_marks_are_looked_up(kafka_broker: str, tmp_path: Path) -> None:
    """A warehouse that holds events but no mark (loaded before marks existed, or its marks
    lost): each partition's first batch is checked against audit.events, and what it holds is
    skipped, as before."""
    from streams.warehouse_loader import WarehouseLoader

    ns = namespace(tmp_path, batch_rows=300)
    ledger = Ledger(ns)
    ledger.produce(600)
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    try:
        load_until(ns.settings, wh, lambda: count(wh) >= 600, "600 rows stored")
        wh.execute("TRUNCATE TABLE audit.loader_offsets")
        wh.lookups = 0
        ledger.produce(300)
        # another group (its name follows the app id): the ledger read again from its start
        settings = ns.settings.model_copy(update={"app_id": f"{ns.settings.app_id}-again"})
        again = WarehouseLoader(settings, wh)  # type: ignore[arg-type]
        again.start()
        try:
            wait_for(lambda: again.stored_events + again.skipped >= 900, 120, "900 records")
        finally:
            again.stop()
        assert wh.lookups > 0 and (again.skipped, again.stored_events) == (600, 300)
        assert_exactly_once(wh, 900)
    finally:
        wh.close()


def test_a_second_loader_joining_mid_load_stores_each_entry_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A rebalance while loading: the batch in hand is stored and committed before the
    partitions move, so the new owner starts after it (the same warehouse, two group members)."""
    from streams.warehouse_loader import WarehouseLoader

    ns = namespace(tmp_path, batch_rows=250)
    ledger = Ledger(ns)
    ledger.produce(3_000)
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    a = WarehouseLoader(ns.settings, wh)  # type: ignore[arg-type]
    b = WarehouseLoader(ns.settings, wh)  # type: ignore[arg-type]
    a.start()
    try:
        wait_for(lambda: count(wh) >= 500, 120, "the first loader under way", 0.1)
        b.start()
        ledger.produce(3_000)
        wait_for(lambda: b.stored_events > 0, 120, "the second loader storing its share", 0.2)
        ledger.produce(1_000)
        wait_for(lambda: count(wh) >= 7_000, 180, "7,000 rows stored", 0.2)
    finally:
        a.stop()
        b.stop()
    assert a.stored_events + b.stored_events == 7_000
    assert a.crashes == b.crashes == 0
    assert_exactly_once(wh, 7_000)
    wh.close()


def test_unstorable_records_among_raw_ones_are_dead_lettered_and_the_rest_stored_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A batch in ingest's layout with records the per-record path refuses (not JSON, a
    record whose hash covers an event without an outcome): the engine refuses the batch as it
    is, each record is then checked, the bad ones dead-lettered before the commit, the rest
    stored once; the batches after it go as they are again."""
    import orjson

    from pipeline.ledger import entry_hash, entry_record
    from streams.warehouse_loader import WarehouseLoader

    ns = namespace(tmp_path, batch_rows=100)
    ledger = Ledger(ns)
    ledger.produce(2_400)  # past every partition's first, checked offsets
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    loader = WarehouseLoader(ns.settings, wh)  # type: ignore[arg-type]
    loader.start()
    try:
        wait_for(lambda: count(wh) >= 2_400, 120, "2,400 rows stored", 0.2)
        raw_before = wh.raw_inserts
        refused_before = refused()
        payload = orjson.dumps(
            {"account_id": ACCOUNTS[0], "action": "x", "actor": {}, "event_id": "forged"},
            option=orjson.OPT_SORT_KEYS,
        )
        ingested_at = "2026-11-02T10:00:01.000Z"
        forged = entry_record(
            payload, 1, "0" * 64, entry_hash("0" * 64, 1, ingested_at, payload), ingested_at, 0
        )
        producer = KafkaProducer(bootstrap_servers=ns.settings.kafka_broker, acks="all")
        for n in range(4):  # one of each on every partition, between good records
            ledger.produce(30)
            producer.send(
                ns.settings.ledger_topic, key=b"bad", value=b"\x00{not json", partition=n % 4
            )
            producer.send(ns.settings.ledger_topic, key=b"bad", value=forged, partition=n % 4)
        producer.flush()
        producer.close()
        ledger.produce(300)
        wait_for(lambda: count(wh) >= 2_820, 120, "2,820 rows stored", 0.2)
        wait_for(lambda: loader.deadlettered == 8, 60, "8 records dead-lettered", 0.2)
        ledger.produce(300)
        wait_for(lambda: count(wh) >= 3_120, 120, "3,120 rows stored", 0.2)
    finally:
        loader.stop()
    assert loader.crashes == 0
    assert_exactly_once(wh, 3_120)
    assert refused() > refused_before  # the engine refused the batches with the bad records
    assert wh.raw_inserts > raw_before  # the batches after them went as they are
    letters = [orjson.loads(r.value) for r in ns.read_topic(ns.settings.deadletter_topic, 8)]
    assert sorted(d["reason"] for d in letters) == ["missing_field"] * 4 + ["not_json"] * 4
    wh.close()


def test_a_warehouse_without_the_raw_path_is_loaded_record_by_record(
    kafka_broker: str, tmp_path: Path
) -> None:
    """The raw insert fails (not a refusal: say, a server without a function it uses) while the
    warehouse works: the batch is stored record by record, checked against what the failed
    insert may have stored, and the run stops trying the raw path."""
    from streams.warehouse_loader import WarehouseLoader

    ns = namespace(tmp_path, batch_rows=100)
    ledger = Ledger(ns)
    ledger.produce(2_400)
    wh = Faulty(EmbeddedWarehouse(tmp_path / "warehouse"))
    wh.raw_broken = True
    loader = WarehouseLoader(ns.settings, wh)  # type: ignore[arg-type]
    loader.start()
    try:
        wait_for(lambda: count(wh) >= 2_400, 120, "2,400 rows stored", 0.2)
        ledger.produce(600)
        wait_for(lambda: count(wh) >= 3_000, 120, "3,000 rows stored", 0.2)
    finally:
        loader.stop()
    assert loader.crashes == 0 and loader.health() == ("ok", "")
    assert wh.raw_inserts == 1  # tried once, then not again in this run
    assert_exactly_once(wh, 3_000)
    wh.close()


def refused() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("pw_warehouse_raw_refused_total") or 0.0


def test_above_the_memory_limit_each_batch_releases_the_engines_freed_memory(
    kafka_broker: str, tmp_path: Path
) -> None:
    """`PW_WAREHOUSE_RELEASE_ABOVE_MIB=1` (this process is always above it): after each stored
    batch the embedded engine is asked to hand back what it freed, and loading goes on as ever."""

    class Releasing(EmbeddedWarehouse):
        releases = 0

        def release_memory(self) -> None:
            Releasing.releases += 1
            super().release_memory()

    ns = Namespace(
        tmp_path,
        extra_env={
            "PW_WAREHOUSE_BATCH_ROWS": "300",
            "PW_WAREHOUSE_BATCH_SECONDS": "0.3",
            "PW_WAREHOUSE_RELEASE_ABOVE_MIB": "1",
        },
    )
    ensure_topics(ns.settings)
    Ledger(ns).produce(1_200)
    wh = Releasing(tmp_path / "warehouse")
    load_until(ns.settings, wh, lambda: count(wh) >= 1_200, "1,200 rows stored")
    assert_exactly_once(wh, 1_200)
    assert Releasing.releases >= 4  # at least one per batch of at most 300 rows
    wh.close()


def test_a_loader_sharing_the_ledger_with_another_says_its_embedded_warehouse_holds_a_share(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Another member of the loaders' group (another worker's loader, which stores into an
    embedded warehouse of its own) takes some of the ledger's partitions, so this loader's
    embedded warehouse holds only part of the record, and it says which partitions it has.
    Alone, given every partition, it says nothing. The stand-in member is a plain consumer of the
    ledger that commits nothing, so once it has left this loader stores the whole ledger here; a
    real second loader commits what it stored, and that stays out of this warehouse."""
    import structlog

    from sinks.kafka_io import consumer
    from streams.warehouse_loader import WarehouseLoader

    ns = namespace(tmp_path, batch_rows=250)
    settings = ns.settings
    ledger = Ledger(ns)
    ledger.produce(1_000)
    wh = EmbeddedWarehouse(tmp_path / "warehouse")
    loader = WarehouseLoader(settings, wh)
    other_done = threading.Event()
    took: set[int] = set()

    def other_member() -> None:
        other = consumer(
            settings,
            settings.ledger_topic,
            role="other-loader",
            group=settings.warehouse_group,
            enable_auto_commit=False,
        )
        try:
            while not other_done.is_set():
                other.poll(timeout_ms=200)
                took.update(tp.partition for tp in other.assignment())
        finally:
            other.close()

    def ledger_shares() -> list[dict[str, Any]]:
        return [
            e
            for e in logs
            if e["event"] == "warehouse.embedded_holds_a_share"
            and e["topic"] == settings.ledger_topic
        ]

    with structlog.testing.capture_logs() as logs:
        loader.start()
        member = threading.Thread(target=other_member, daemon=True)
        try:
            wait_for(lambda: count(wh) >= 1_000, 120, "the loader alone", 0.1)
            alone = [e for e in logs if e["event"] == "warehouse.embedded_holds_a_share"]
            member.start()
            wait_for(
                lambda: bool(took) and bool(ledger_shares()),
                120,
                "the other member's partitions and the loader's warning",
                0.2,
            )
            other_done.set()
            member.join(30)
            ledger.produce(1_000)
            wait_for(lambda: count(wh) >= 2_000, 180, "the whole ledger stored again", 0.2)
        finally:
            other_done.set()
            loader.stop()
    assert alone == []
    partitions = set(range(settings.topic_partitions))
    share = ledger_shares()[0]
    assert share["log_level"] == "warning"
    assert share["of"] == len(partitions)
    assert set(share["partitions"]) == partitions - took
    assert "PW_CLICKHOUSE_URL" in share["detail"]
    assert_exactly_once(wh, 2_000)
    wh.close()
