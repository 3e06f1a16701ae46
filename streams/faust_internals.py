"""Every private attribute of Faust and aiokafka the worker touches, in one place.

Each hook below relies on how faust-streaming and aiokafka work inside, at the versions in
`TESTED`; importing this module with any other version installed raises RuntimeError (see
pipeline/dependency_pins.py), so an upgrade is a deliberate act: re-read these hooks against
the new code, then move the pins here and in pyproject.toml together.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import aiokafka.conn as aiokafka_conn
import aiokafka.errors as aiokafka_errors
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.types import Array, Bytes, Int32, Schema

from pipeline.dependency_pins import require_tested

TESTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
require_tested(TESTED, __name__)


async def fetch_cluster_metadata(consumer: Any) -> Any:
    """Fresh cluster metadata through an aiokafka consumer's client. (`consumer.topics()` fetches
    it but leaves it out of the consumer's cluster view, so `partitions_for_topic` stays None for
    a topic created after the consumer started.)"""
    return await consumer._client.fetch_all_metadata()


def start_tables_without_pause(app: Any) -> None:
    """Faust's TableManager sleeps one second on start (faust/tables/manager.py `on_start`) so
    that tables defined late can still register before recovery; the worker's start waits on it.
    PartnerWatch defines no Faust table (detection state lives in the ingest service's own
    topics, streams/ingest_partition.py), so there is nothing to wait for. Should a table be
    defined, Faust's own start runs."""
    manager = app.tables
    faust_start = manager.on_start

    async def on_start() -> None:
        if len(manager):  # a table was defined after all: Faust's own start, pause included
            await faust_start()
        elif not manager.should_stop:
            await manager._update_channels()
            await manager.recovery.start()

    manager.on_start = on_start


def set_fetch_max_wait(consumer: Any, ms: int) -> None:
    """How long the broker may hold the consumer's next fetch requests when it has nothing for
    them (aiokafka reads `fetch_max_wait_ms` from its fetcher each time it builds a request,
    aiokafka/consumer/fetcher.py `_get_actions_per_node`; a fetch in flight keeps its own)."""
    consumer._fetcher._fetch_max_wait_ms = int(ms)


#: A `Bytes` value this long (a produce request's record batch) goes to the socket as it is.
_AS_IS = 64 * 1024


def _pieces(field: Any, value: Any, out: list[Any]) -> None:
    """`field.encode(value)` as a list of pieces that join to the same bytes, with every long
    `Bytes` value a piece of its own, not copied (aiokafka/protocol/types.py `Schema`, `Array`
    and `Bytes`; every other type encodes itself, as in aiokafka)."""
    kind = type(field)
    if kind is Schema:
        if len(value) != len(field.fields):
            raise ValueError("Item field count does not match Schema")
        for member, item in zip(field.fields, value, strict=True):
            _pieces(member, item, out)
    elif kind is Array:
        if value is None:
            out.append(Int32.encode(-1))
        else:
            out.append(Int32.encode(len(value)))
            for item in value:
                _pieces(field.array_of, item, out)
    elif field is Bytes and value is not None and len(value) >= _AS_IS:
        out.append(Int32.encode(len(value)))
        out.append(value)
    else:
        out.append(field.encode(value))


def request_pieces(header: Any, request_struct: Any) -> list[Any]:
    """The size-prefixed message `AIOKafkaConnection.send` writes for `request_struct` (aiokafka
    builds `size + header.encode() + request_struct.encode()`), as few pieces: the short parts
    joined, each long `Bytes` value as it is."""
    parts: list[Any] = [header.encode()]
    schema = type(request_struct).SCHEMA
    _pieces(schema, [request_struct.__dict__[name] for name in schema.names], parts)
    pieces: list[Any] = []
    short: list[bytes] = []
    for part in parts:
        if len(part) >= _AS_IS:
            if short:
                pieces.append(b"".join(short))
                short = []
            pieces.append(part)
        else:
            short.append(part)
    if short:
        pieces.append(b"".join(short))
    size = sum(len(piece) for piece in pieces)
    return [struct.pack(">i", size) + pieces[0], *pieces[1:]]


def _send_without_copies(self: Any, request: Any, expect_response: bool = True) -> Any:
    """`AIOKafkaConnection.send` (aiokafka/conn.py), for produce requests: the record batches go
    to the transport as they are instead of being copied into one message about eight times by
    aiokafka's nested joins, each copy of a 1 MiB batch a fresh mapping at the worker's fixed
    mmap threshold (streams/trim_thread.py). On uvloop (the worker's loop) `writelines` keeps a
    view of each piece and writes them with one `writev`; asyncio's own loop joins them once,
    and a TLS transport copies them into its buffer as it would one message. Every other
    request goes the library's own way."""
    if not isinstance(request, ProduceRequest):
        return _LIBRARY_SEND(self, request, expect_response)
    if self._writer is None:
        raise aiokafka_errors.KafkaConnectionError(
            f"No connection to broker at {self._host}:{self._port}"
        )
    request_struct = request.prepare(self._versions)
    correlation_id = self._next_correlation_id()
    header = request_struct.build_request_header(
        correlation_id=correlation_id, client_id=self._client_id
    )
    pieces = request_pieces(header, request_struct)
    try:
        self._writer.writelines(pieces)
    except OSError as err:
        self.close(reason=aiokafka_conn.CloseReason.CONNECTION_BROKEN)
        raise aiokafka_errors.KafkaConnectionError(
            f"Connection at {self._host}:{self._port} broken: {err}"
        ) from err
    aiokafka_conn.log.debug(
        "Request to %s:%d %d: %s", self._host, self._port, correlation_id, request_struct
    )
    if not expect_response:
        return self._writer.drain()
    fut = self._loop.create_future()
    self._requests.append((correlation_id, request_struct, fut))
    return aiokafka_conn.wait_for(fut, self._request_timeout)


_LIBRARY_SEND = aiokafka_conn.AIOKafkaConnection.send


def send_produce_requests_without_copies() -> None:
    """Every aiokafka connection of this process writes produce requests without copying their
    record batches (`_send_without_copies`); idempotent."""
    aiokafka_conn.AIOKafkaConnection.send = _send_without_copies


def raw_value(value: bytes | None) -> bytes | None:
    """A consumer's `value_deserializer` that leaves each value as it is, and asks for the
    records as fetched (`records_as_fetched`): give it to consumers whose code reads only a
    record's `offset`, `key`, `value` and `timestamp`."""
    return value


def _record_as_fetched(self: Any, tp: Any, record: Any) -> Any:
    """`PartitionRecords._consumer_record` (aiokafka/consumer/fetcher.py): for a consumer whose
    value deserializer is `raw_value` (and no key deserializer), the record object aiokafka
    read from the record batch itself, which has the same `offset`, `key`, `value`,
    `timestamp`, `timestamp_type`, `headers` and `checksum` but no `topic` or `partition`:
    no `ConsumerRecord` (a dataclass, about 0.65 µs to build) per record. Every other consumer
    gets its `ConsumerRecord`s as ever."""
    if self._value_deserializer is raw_value and self._key_deserializer is None:
        return record
    return _LIBRARY_CONSUMER_RECORD(self, tp, record)


_LIBRARY_CONSUMER_RECORD = PartitionRecords._consumer_record


def records_as_fetched() -> None:
    """Consumers of this process with `value_deserializer=raw_value` get the records as
    fetched (`_record_as_fetched`); idempotent. Without it, they get `ConsumerRecord`s with the
    same values."""
    PartitionRecords._consumer_record = _record_as_fetched


def _release(records: Any) -> None:
    """Drop a `PartitionRecords`' record iterator: a generator whose frame holds the
    `PartitionRecords` itself (aiokafka/consumer/fetcher.py `_unpack_records`), a reference cycle
    that aiokafka breaks only when the iterator is exhausted. Without this, records fetched and
    then dropped unread (the partition paused or sought: `FetchResult.check_assignment`; the
    result discarded by the fetcher) stay in that cycle, with their fetch's record bytes (up to
    `max_partition_fetch_bytes`, 4 MiB here, sinks/kafka_io.py), until the collector's middle
    generation finds them. Measured: the provider stage process, which pauses the partitions
    that run ahead, grew from 208 to 400 MiB over 1,500,000 events with that generation
    collected every 1,000 young collections, and stayed at 200-211 MiB with this hook."""
    if records is not None:
        records._records_iterator = None


def _check_assignment_releasing(self: Any, tp: Any) -> bool:
    """`FetchResult.check_assignment`, and a result it refuses (paused, sought, unassigned:
    it sets `_partition_records` to None) released at once (`_release`)."""
    records = self._partition_records
    if _LIBRARY_CHECK_ASSIGNMENT(self, tp):
        return True
    _release(records)
    return False


def _fetch_result_del(self: Any, release: Callable[[Any], None] = _release) -> None:
    """A `FetchResult` the fetcher drops with records left (a seek, a reset, a lost
    assignment: `del self._records[tp]`) releases them (`_release`, bound here: at the
    interpreter's exit the module's globals may be gone before the last result)."""
    release(getattr(self, "_partition_records", None))


_LIBRARY_CHECK_ASSIGNMENT = FetchResult.check_assignment


def release_dropped_fetches() -> None:
    """Records every consumer of this process fetched and then dropped unread are freed when
    dropped, not when the collector next walks its middle generation (`_release`); idempotent."""
    FetchResult.check_assignment = _check_assignment_releasing
    FetchResult.__del__ = _fetch_result_del
