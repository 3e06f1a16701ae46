"""Records as fetched (streams/faust_internals.py `records_as_fetched`): a consumer whose value
deserializer is `raw_value` gets aiokafka's own record objects, with the same offset, key,
value and timestamp a `ConsumerRecord` would carry; every other consumer gets `ConsumerRecord`s
as before."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_COMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord

from streams import faust_internals
from streams.faust_internals import raw_value, records_as_fetched

TP = TopicPartition("pw.actions", 2)
VALUES = [(b"A0001SELLER", b'{"event_id":"e1"}'), (None, b"\x00\xff<script>"), (b"k", None)]


def _fetched(first_offset: int = 40) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1024 * 1024,
    )
    for i, (key, value) in enumerate(VALUES):
        builder.append(i, timestamp=1_796_444_000_000 + i, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = first_offset.to_bytes(8, "big")  # the batch's base offset, as the broker sets it
    return bytes(data)


def _records(value_deserializer: Any, key_deserializer: Any = None) -> list[Any]:
    records = PartitionRecords(
        TP,
        MemoryRecords(_fetched()),
        [],
        40,
        key_deserializer,
        value_deserializer,
        True,
        READ_COMMITTED,
    )
    return list(records)


@pytest.fixture(autouse=True)
def _installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed for each test, and the class as it was afterwards."""
    monkeypatch.setattr(
        PartitionRecords, "_consumer_record", faust_internals._LIBRARY_CONSUMER_RECORD
    )
    records_as_fetched()


def test_a_raw_value_consumer_gets_the_records_as_fetched() -> None:
    raw = _records(raw_value)
    assert not any(isinstance(r, ConsumerRecord) for r in raw)
    library = _records(None)
    assert all(isinstance(r, ConsumerRecord) for r in library)
    for ours, theirs in zip(raw, library, strict=True):
        for name in ("offset", "key", "value", "timestamp", "timestamp_type", "checksum"):
            assert getattr(ours, name) == getattr(theirs, name), name
        assert tuple(ours.headers) == theirs.headers
    assert [r.offset for r in raw] == [40, 41, 42]
    assert [(r.key, r.value) for r in raw] == VALUES


def test_other_consumers_keep_their_consumer_records() -> None:
    """A consumer with deserializers of its own, or a key deserializer beside `raw_value`,
    gets `ConsumerRecord`s, deserialized as it asked."""
    upper = _records(lambda v: v and v.upper())
    assert all(isinstance(r, ConsumerRecord) for r in upper)
    assert upper[0].value == b'{"EVENT_ID":"E1"}'
    keyed = _records(raw_value, key_deserializer=lambda k: k)
    assert all(isinstance(r, ConsumerRecord) for r in keyed)
    assert keyed[0].topic == "pw.actions" and keyed[0].partition == 2


def test_without_the_hook_a_raw_value_consumer_gets_the_same_values() -> None:
    """`raw_value` is a real deserializer (the identity): a consumer built with it reads the
    same values whether or not the hook is installed."""
    previous = PartitionRecords._consumer_record
    PartitionRecords._consumer_record = faust_internals._LIBRARY_CONSUMER_RECORD
    try:
        plain = _records(raw_value)
    finally:
        PartitionRecords._consumer_record = previous
    assert all(isinstance(r, ConsumerRecord) for r in plain)
    assert [(r.key, r.value) for r in plain] == VALUES


def test_the_ingest_the_provider_stage_and_the_loader_consume_raw() -> None:
    """The three consumers of the per-event path, whose code reads only a record's offset,
    key, value and timestamp (the loader names the topic and partition of a dead letter from
    the fetch's own, tests/security/test_loader_bad_record.py): each builds its consumer with
    `raw_value` (the calls, not a comment, checked on the parsed code)."""
    import ast
    import inspect

    from streams import ingest, provider_stage, warehouse_loader

    for module in (ingest, provider_stage, warehouse_loader):
        calls = [
            n for n in ast.walk(ast.parse(inspect.getsource(module))) if isinstance(n, ast.Call)
        ]
        raw = [
            c
            for c in calls
            if isinstance(c.func, ast.Name)
            and c.func.id == "aio_consumer"
            and any(
                k.arg == "value_deserializer"
                and isinstance(k.value, ast.Name)
                and k.value.id == "raw_value"
                for k in c.keywords
            )
        ]
        installs = [
            c for c in calls if isinstance(c.func, ast.Name) and c.func.id == "records_as_fetched"
        ]
        assert raw and installs, module.__name__
