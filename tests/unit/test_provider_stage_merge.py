"""The provider stage's merge (streams/provider_stage.py `_take` and `_merge`) without Kafka.

It folds the buffered ledger entries oldest event time first across partitions (ties by
partition, each partition in its own order), holds back while a partition that will deliver
more has nothing buffered, publishes each event's alert versions in order before counting the
event's offset as folded, and counts the folded events. The order is checked against the plain
rule it implements (pop the oldest head, one entry at a time), on arbitrary buffers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, NamedTuple

import orjson
from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from pipeline.config import Settings
from pipeline.ledger import event_of
from streams.provider_stage import ProviderStage

SETTINGS = Settings.from_env({})
TOPIC = SETTINGS.ledger_topic


class Record(NamedTuple):
    offset: int
    value: bytes


class Consumer:
    """Each partition committed up to `ends`, fetched up to `fetched`."""

    def __init__(self, ends: dict[int, int], fetched: dict[int, int]) -> None:
        self.ends, self.fetched = ends, fetched

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return self.ends[tp.partition]

    async def position(self, tp: TopicPartition) -> int:
        return self.fetched[tp.partition]


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        self.sent.append((topic, value, key))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class Folding:
    """Stands in for `Stage`: records what it is given; events named in `alerting` raise two
    alert versions each."""

    def __init__(self, alerting: frozenset[str] = frozenset()) -> None:
        self.seen: list[str] = []
        self.alerting = alerting

    def observe(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        assert not {"seq", "hash", "prev_hash", "ingested_at"} & set(event)  # the event alone
        self.seen.append(event["event_id"])
        if event["event_id"] not in self.alerting:
            return []
        return [
            {
                "alert_id": f"{event['event_id']}-{n}",
                "account_id": event["account_id"],
                "detector": "d",
            }
            for n in (1, 2)
        ]


def entry(partition: int, offset: int, minute: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"p{partition}o{offset}",
            "occurred_at": f"2026-11-02T08:{minute:02d}:00.000Z",
            "account_id": f"A{partition}",
            "seq": offset + 1,
            "hash": "0" * 64,
            "prev_hash": "0" * 64,
            "ingested_at": "2026-11-02T09:00:00.000Z",
        }
    )


def holder(
    minutes: dict[int, list[int]],
    fetched: dict[int, int] | None = None,
    alerting: frozenset[str] = frozenset(),
) -> tuple[ProviderStage, Folding, Producer]:
    """A stage holding every partition of `minutes` (each entry's event minute, in ledger
    order), those fetched (all by default) buffered through `_take`."""
    stage = ProviderStage(SETTINGS)
    folding, producer = Folding(alerting), Producer()
    ends = {p: len(m) for p, m in minutes.items()}
    upto = dict(ends) if fetched is None else fetched
    stage.stage = folding  # type: ignore[assignment]
    stage._alerts = producer
    stage._consumer = Consumer(ends, upto)
    stage._backlog._at = math.inf  # never asks the broker
    stage.partitions = sorted(minutes)
    stage.buffers = {p: deque() for p in minutes}
    stage._take(
        {
            TopicPartition(TOPIC, p): [
                Record(o, entry(p, o, m)) for o, m in enumerate(ms[: upto[p]])
            ]
            for p, ms in minutes.items()
        }
    )
    return stage, folding, producer


def oldest_head_first(minutes: dict[int, list[int]]) -> list[str]:
    """The rule: pop the oldest head (ties: the lowest partition), one entry at a time."""
    queues = {p: deque(enumerate(ms)) for p, ms in minutes.items()}
    out = []
    while any(queues.values()):
        p = min((q[0][1], p) for p, q in queues.items() if q)[1]
        offset, _ = queues[p].popleft()
        out.append(f"p{p}o{offset}")
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 5), st.lists(st.integers(0, 20), max_size=12), min_size=1, max_size=4
    )
)
def test_entries_are_folded_oldest_head_first(minutes: dict[int, list[int]]) -> None:
    stage, folding, _ = holder(minutes)
    asyncio.run(stage._merge())
    assert folding.seen == oldest_head_first(minutes)
    assert stage.folded == {p: len(ms) for p, ms in minutes.items() if ms}
    assert stage.folded_total == sum(len(ms) for ms in minutes.values())
    assert not any(stage.buffers.values())


def test_a_partition_with_more_to_come_and_nothing_buffered_holds_the_merge_back() -> None:
    # partition 1 has two records committed, one fetched: once its buffer is empty the merge
    # stops, leaving partition 0's later entries for after the next fetch
    stage, folding, _ = holder({0: [1, 2, 5, 6], 1: [3, 4]}, fetched={0: 4, 1: 1})
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p1o0"]
    assert stage.folded == {0: 2, 1: 1} and stage.folded_total == 3
    assert [e[1] for e in stage.buffers[0]] == [2, 3]
    # nothing buffered on 1 with more to come: the next merge folds nothing (held back)
    held = held_seconds()
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p1o0"] and stage._held_since is not None
    assert stage._waiting == {1: "ledger_unfetched"}
    time.sleep(0.01)
    # the rest of partition 1 arrives: the hold ends and the merge goes on in order
    stage._consumer.fetched[1] = 2  # type: ignore[union-attr]
    stage._take({TopicPartition(TOPIC, 1): [Record(1, entry(1, 1, 4))]})
    assert stage._held_since is None
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p1o0", "p1o1", "p0o2", "p0o3"]
    assert stage.folded == {0: 4, 1: 2} and stage.folded_total == 6
    # the held time was counted once, by its reason; a merge that did not hold adds nothing
    after = held_seconds()
    assert after["ledger_unfetched"] >= held["ledger_unfetched"] + 0.01
    assert after["ingest_backlog"] == held["ingest_backlog"]
    stage._take({TopicPartition(TOPIC, 0): [Record(4, entry(0, 4, 7))]})
    stage._consumer.fetched[0] = stage._consumer.ends[0] = 5  # type: ignore[union-attr]
    asyncio.run(stage._merge())
    assert held_seconds() == after


def test_ledger_records_committed_after_the_last_fetch_hold_the_merge_back() -> None:
    """Ingest has just committed partition 1's records and its source offset (it is no longer
    behind), after the stage's last fetch of it: that fetch's last stable offset says nothing
    more is there; the backlog's look at the ledger's ends, read after the group's offsets
    (streams/ingest_backlog.py), says there is."""

    def stale(looked: dict[int, int]) -> tuple[ProviderStage, Folding]:
        stage, folding, _ = holder({0: [1, 2, 5, 6], 1: [3, 4]}, fetched={0: 4, 1: 0})
        stage._consumer.ends[1] = 0  # type: ignore[union-attr]  # as the last fetch saw it
        stage._backlog.ledger_ends = looked
        return stage, folding

    # without the look, partition 0 is folded ahead of partition 1's minutes 3 and 4
    stage, folding = stale({})
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p0o2", "p0o3"]
    # with it (and beside a look the fetch has reached already, which counts for nothing), held
    # back
    for looked in ({0: 4, 1: 2}, {1: 2}):
        stage, folding = stale(looked)
        asyncio.run(stage._merge())
        assert folding.seen == [] and stage._held_since is not None
        stage._consumer.fetched[1] = 2  # type: ignore[union-attr]
        stage._take(
            {TopicPartition(TOPIC, 1): [Record(0, entry(1, 0, 3)), Record(1, entry(1, 1, 4))]}
        )
        asyncio.run(stage._merge())
        assert folding.seen == ["p0o0", "p0o1", "p1o0", "p1o1", "p0o2", "p0o3"]
    # a look that says less than the last fetch does not end a hold the fetch asks for
    stage, folding, _ = holder({0: [1, 2, 5, 6], 1: [3, 4]}, fetched={0: 4, 1: 1})
    stage._backlog.ledger_ends = {1: 0}
    asyncio.run(stage._merge())
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p1o0"] and stage._held_since is not None


def test_a_backlog_holds_the_merge_and_the_time_is_counted_as_such() -> None:
    """Ingest was behind on partition 1 at the last look: with nothing of 1 buffered the merge
    holds, and the time until the next merge counts as `ingest_backlog`; once the look finds
    it caught up and its records come, the merge goes on in order."""
    stage, folding, _ = holder({0: [1, 2, 5, 6], 1: []})
    stage._backlog.partitions = {1}
    held = held_seconds()
    asyncio.run(stage._merge())
    assert folding.seen == [] and stage._waiting == {1: "ingest_backlog"}
    time.sleep(0.01)
    fetched = stage._consumer.fetched  # type: ignore[union-attr]
    ends = stage._consumer.ends  # type: ignore[union-attr]
    fetched[1] = ends[1] = 1
    stage._take({TopicPartition(TOPIC, 1): [Record(0, entry(1, 0, 3))]})
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p1o0"]  # then held again: still behind
    after = held_seconds()
    assert after["ingest_backlog"] >= held["ingest_backlog"] + 0.01
    assert after["ledger_unfetched"] == held["ledger_unfetched"]
    stage._backlog.partitions = set()  # the next look: caught up
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p0o1", "p1o0", "p0o2", "p0o3"]


def held_seconds() -> dict[str, float]:
    """`pw_provider_stage_held_seconds_total` by reason, as counted so far."""
    return {
        why: REGISTRY.get_sample_value("pw_provider_stage_held_seconds_total", {"reason": why})
        or 0.0
        for why in ("ingest_backlog", "ledger_unfetched")
    }


def test_alerts_are_published_in_order_and_awaited_by_the_checkpoint() -> None:
    alerting = frozenset({"p1o0", "p0o1"})
    stage, folding, producer = holder({0: [1, 4], 1: [2, 3]}, alerting=alerting)
    asyncio.run(stage._merge())
    assert folding.seen == ["p0o0", "p1o0", "p1o1", "p0o1"]
    assert [orjson.loads(v)["alert_id"] for _, v, _ in producer.sent] == [
        "p1o0-1",
        "p1o0-2",
        "p0o1-1",
        "p0o1-2",
    ]
    assert {t for t, _, _ in producer.sent} == {SETTINGS.alerts_topic}
    assert [k for _, _, k in producer.sent] == [b"A1", b"A1", b"A0", b"A0"]
    assert len(stage._pending) == 4  # the checkpoint waits for these
    assert stage.newest_ms == 1_793_606_640_000  # 08:04, the latest event time folded


class Keeping:
    """Stands in for `Stage`: keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def observe(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self.events.append(event)
        return []


_text = st.text(max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_entries = st.lists(
    st.tuples(
        # around the top-level key: nested `occurred_at` keys before and after it, quotes,
        # escapes and non-ASCII in every string
        st.dictionaries(_text, _json, max_size=3),
        st.dictionaries(st.just("occurred_at"), _json, max_size=1),
        st.dictionaries(_text, _json, max_size=3),
    ),
    min_size=1,
    max_size=8,
)


def records(
    parts: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]], times: list[str]
) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "details": {**before, **nested},
                "event_id": f"e{offset}",
                "occurred_at": at,
                "resource": {"occurred_at": "2000-01-01T00:00:00.000Z", **after},
                "seq": offset + 1,
                "hash": "0" * 64,
                "prev_hash": "0" * 64,
                "ingested_at": "2026-11-02T09:00:00.000Z",
            }
        )
        for offset, ((before, nested, after), at) in enumerate(zip(parts, times, strict=True))
    ]


def keeping_holder(values: list[bytes]) -> tuple[ProviderStage, Keeping]:
    """A stage holding partition 0, with `values` fetched and buffered through `_take`."""
    stage = ProviderStage(SETTINGS)
    keeping = Keeping()
    stage.stage = keeping  # type: ignore[assignment]
    stage._alerts = Producer()
    stage._consumer = Consumer({0: len(values)}, {0: len(values)})
    stage._backlog._at = math.inf
    stage.partitions = [0]
    stage.buffers = {0: deque()}
    stage._take({TopicPartition(TOPIC, 0): [Record(o, v) for o, v in enumerate(values)]})
    return stage, keeping


@settings(max_examples=200, deadline=None)
@given(_entries, st.lists(st.text(max_size=30), min_size=8, max_size=8))
def test_buffered_records_are_keyed_by_the_top_level_event_time(
    parts: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]], times: list[str]
) -> None:
    # `_take` decodes only the event time of each record (msgspec): the same string as the
    # entry's top-level `occurred_at` read by orjson, whatever the text around it
    values = records(parts, times[: len(parts)])
    stage, _ = keeping_holder(values)
    assert [(at, o) for at, o, _ in stage.buffers[0]] == [
        (orjson.loads(v)["occurred_at"], o) for o, v in enumerate(values)
    ]


@settings(max_examples=200, deadline=None)
@given(_entries, st.lists(st.integers(0, 59), min_size=8, max_size=8))
def test_entries_are_parsed_when_folded_as_the_whole_record_reads(
    parts: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]], minutes: list[int]
) -> None:
    # `_merge` parses a buffered record when it folds it: the event is the entry less the
    # ledger's fields (`event_of`), its keys in the entry's order, in event-time order
    times = [f"2026-11-02T08:{m:02d}:00.000Z" for m in minutes[: len(parts)]]
    values = records(parts, times)
    stage, keeping = keeping_holder(values)
    asyncio.run(stage._merge())
    expected = [event_of(orjson.loads(v)) for v in values]
    assert keeping.events == expected  # one partition: its own order
    assert [list(e) for e in keeping.events] == [list(e) for e in expected]
    assert stage.folded == {0: len(values)}
