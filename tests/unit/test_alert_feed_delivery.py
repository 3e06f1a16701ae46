"""One stream client's delivery loop (streams/alert_feed.py `AlertFeed.deliver`), on a simulated
topic and tailer (the real ones: tests/live_feed/test_feed.py).

A client's queue overflows when alerts come faster than the connection hands them over. A client
that reads is only behind: it reads what it dropped from the topic until it is level with the
tailer, and stays. One that stopped reading (a write found the buffers full and waited), or whose
read of the topic does not get closer to the tailer, is told it is too slow. Either way it has
each record once, in order, so it can resume from its last id."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

import streams.alert_feed as alert_feed
from pipeline.config import Settings
from streams.alert_feed import AlertFeed, AlertFilter, FeedRecord, Subscriber

QUEUE = 4


class Topic:
    """Two partitions of alerts, and the feed's tailer, which may be behind them: `publish` puts
    alerts on the topic, `tail` hands the oldest ones the tailer has not read to the feed."""

    def __init__(self, feed: AlertFeed) -> None:
        self.feed = feed
        self.records: dict[int, list[FeedRecord]] = {0: [], 1: []}
        self.pending: list[FeedRecord] = []
        self.reads = 0
        feed.positions = [0, 0]
        feed.partitions = 2

    def publish(self, count: int) -> None:
        for _ in range(count):
            p = (len(self.records[0]) + len(self.records[1])) % 2
            offset = len(self.records[p])
            record = FeedRecord(p, offset, {"alert_id": f"a{p}-{offset}", "p": p, "o": offset})
            self.records[p].append(record)
            self.pending.append(record)

    def tail(self, count: int) -> None:
        for record in self.pending[:count]:
            self.feed._fan_out(record)
        del self.pending[:count]

    def total(self) -> int:
        return len(self.records[0]) + len(self.records[1])


class Reader:
    """The connection's own read of the simulated topic, `per_fetch` records per partition a
    fetch: per record it returns, `arrivals` alerts are published (for its first
    `reads_with_arrivals` records) and the tailer reads `tailed` more."""

    def __init__(
        self,
        topic: Topic,
        position: list[int],
        arrivals: int,
        tailed: int,
        reads_with_arrivals: int,
    ) -> None:
        self.topic, self.position = topic, list(position)
        self.arrivals, self.tailed, self.reads_with_arrivals = arrivals, tailed, reads_with_arrivals
        self.closed = False

    async def open(self) -> None:
        pass

    pause = 0.0

    async def fetch(self) -> list[FeedRecord]:
        await asyncio.sleep(self.pause)
        out = []
        for p, records in self.topic.records.items():
            out += records[self.position[p] : self.position[p] + 5]
            self.position[p] += len(records[self.position[p] : self.position[p] + 5])
        for _ in out:
            self.topic.reads += 1
            if self.topic.reads <= self.reads_with_arrivals:
                self.topic.publish(self.arrivals)
            self.topic.tail(self.tailed)
        return out

    async def positions(self) -> list[int]:
        return list(self.position)

    def distance(self) -> int | None:
        return sum(len(self.topic.records[p]) - self.position[p] for p in self.topic.records)

    async def close(self) -> None:
        self.closed = True


def read_topic(
    feed: AlertFeed, topic: Topic, arrivals: int = 0, tailed: int = 0, reads_with_arrivals: int = 0
) -> list[Reader]:
    """Give the feed simulated readers; the list of those it opened."""
    opened: list[Reader] = []

    def open_reader(position: list[int]) -> Reader:
        opened.append(Reader(topic, position, arrivals, tailed, reads_with_arrivals))
        return opened[-1]

    feed.open_reader = open_reader  # type: ignore[method-assign]
    return opened


class Client:
    """Keeps what it is sent. A write returns at once, as the real one does while the socket takes
    the data (streams/web/alerts.py), except its `stall_at`-th, which waits `stall` seconds for the
    client to read; its `gone_at`-th finds the client gone."""

    def __init__(self, stall_at: int = 0, stall: float = 0.0, gone_at: int = 0) -> None:
        self.writes: list[bytes] = []
        self.stall_at, self.stall, self.gone_at = stall_at, stall, gone_at

    async def write(self, data: bytes) -> None:
        if len(self.writes) + 1 == self.gone_at:
            raise ConnectionResetError("gone")
        self.writes.append(data)
        if len(self.writes) == self.stall_at:
            await asyncio.sleep(self.stall)

    def closed(self) -> bool:
        return False

    def alerts(self) -> list[tuple[int, int]]:
        return [
            (alert["p"], alert["o"])
            for block in b"".join(self.writes).split(b"\n\n")
            if b"\nevent: alert\n" in block
            for alert in [orjson.loads(block.split(b"\ndata: ", 1)[1])]
        ]

    def errors(self) -> list[str]:
        return [w.decode() for w in self.writes if w.startswith(b"event: error")]


def each_once_in_order(client: Client, resume: list[int]) -> dict[int, list[int]]:
    got = {p: [o for q, o in client.alerts() if q == p] for p in (0, 1)}
    for p, offsets in got.items():
        assert offsets == list(range(resume[p], resume[p] + len(offsets))), (p, offsets)
    return got


def new_feed() -> tuple[AlertFeed, Topic]:
    feed = AlertFeed(Settings(sse_queue_size=QUEUE, sse_keepalive=0.05))
    return feed, Topic(feed)


async def tailer(topic: Topic, chunk: int) -> None:
    """The tailer catching up with the topic a whole fetch (`chunk` records) at a time."""
    while True:
        topic.tail(chunk)
        await asyncio.sleep(0)


async def until(predicate: object, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


async def until_level(
    feed: AlertFeed, sub: Subscriber, client: Client, readers: list[Reader], timeout: float = 5.0
) -> None:
    """Deliver from the topic's start until the read of the topic is over, then stop the feed."""
    delivery = asyncio.ensure_future(feed.deliver(sub, [0, 0], client))
    await until(lambda: delivery.done() or (bool(readers) and readers[-1].closed), timeout)
    feed.closing = True
    await delivery


def test_a_client_that_reads_stays_through_bursts_and_a_tailer_behind_the_topic() -> None:
    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(40)
        topic.tail(10)  # the tailer is 30 behind the topic when the client resumes
        resume = [2, 3]
        sub = feed.subscribe(AlertFilter())
        readers = read_topic(feed, topic, arrivals=3, tailed=4, reads_with_arrivals=30)
        client = Client()
        delivery = asyncio.ensure_future(feed.deliver(sub, resume, client))
        # the catch-up: 90 more come while it reads, and it ends level with the tailer
        await until(lambda: len(client.alerts()) == topic.total() - sum(resume))
        assert not topic.pending and len(readers) == 1
        fetches = asyncio.ensure_future(tailer(topic, chunk=20))  # 20 at once: more than QUEUE
        for _ in range(5):  # then bursts of live alerts
            topic.publish(25)
            await asyncio.sleep(0.01)
        await until(lambda: len(client.alerts()) == topic.total() - sum(resume))
        await asyncio.sleep(0.1)
        feed.closing = True
        await delivery
        fetches.cancel()
        assert client.errors() == []
        assert len(readers) > 1 and all(r.closed for r in readers)  # it overflowed, and read again
        got = each_once_in_order(client, resume)
        assert [len(got[0]) + resume[0], len(got[1]) + resume[1]] == [
            len(topic.records[0]),
            len(topic.records[1]),
        ]

    asyncio.run(run())


def test_a_client_whose_write_waits_is_told_it_is_too_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alert_feed, "SLOW_WRITE_SECONDS", 0.05)

    async def run() -> None:
        feed, topic = new_feed()
        sub = feed.subscribe(AlertFilter())
        read_topic(feed, topic)
        client = Client(stall_at=3, stall=0.3)  # it stops reading at its third alert, for a while
        delivery = asyncio.ensure_future(feed.deliver(sub, None, client))
        fetches = asyncio.ensure_future(tailer(topic, chunk=1))
        for _ in range(10):
            topic.publish(2)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(delivery, 5)  # it ends by itself
        fetches.cancel()
        assert len(client.errors()) == 1 and "too slow" in client.errors()[0]
        assert client.writes[-1] == client.writes[-1].split(b"\n\n")[0] + b"\n\n"
        got = each_once_in_order(client, [0, 0])
        assert 3 <= len(got[0]) + len(got[1]) < topic.total()

    asyncio.run(run())


def test_a_resuming_client_whose_write_waits_is_told_it_is_too_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alert_feed, "SLOW_WRITE_SECONDS", 0.05)

    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(60)
        topic.tail(60)
        sub = feed.subscribe(AlertFilter())
        readers = read_topic(feed, topic)
        client = Client(stall_at=7, stall=0.2)
        await asyncio.wait_for(feed.deliver(sub, [0, 0], client), 5)
        assert len(client.errors()) == 1 and "too slow" in client.errors()[0]
        each_once_in_order(client, [0, 0])
        assert len(client.alerts()) == 7  # it stalled on the 7th, then was told
        assert len(readers) == 1 and readers[0].closed

    asyncio.run(run())


def test_a_client_that_read_past_the_tailer_gets_what_the_tailer_reads_later_once() -> None:
    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(40)
        topic.tail(10)  # the tailer is 30 behind the topic, at 5 and 5
        resume = [2, 3]
        sub = feed.subscribe(AlertFilter())
        read_topic(feed, topic)
        client = Client()
        delivery = asyncio.ensure_future(feed.deliver(sub, resume, client))
        # its own read takes 5 a partition, to 7 and 8: past the tailer, which then reads 5 to 7
        # and 5 to 8 again
        await until(lambda: len(client.alerts()) == 10)
        while topic.pending:  # the tailer catches up, a few at a time
            topic.tail(2)
            await asyncio.sleep(0.01)
        topic.publish(3)
        topic.tail(3)
        await until(lambda: len(client.alerts()) >= topic.total() - sum(resume))
        await asyncio.sleep(0.1)
        feed.closing = True
        await delivery
        assert client.errors() == []
        got = each_once_in_order(client, resume)
        assert sum(len(v) for v in got.values()) == topic.total() - sum(resume)

    asyncio.run(run())


def test_a_reading_client_is_not_too_slow_when_the_loop_was_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alert_feed, "SLOW_WRITE_SECONDS", 0.05)

    async def run() -> None:
        feed, topic = new_feed()
        sub = feed.subscribe(AlertFilter())
        read_topic(feed, topic)
        client = Client()  # it reads: its writes return at once
        delivery = asyncio.ensure_future(feed.deliver(sub, None, client))
        fetches = asyncio.ensure_future(tailer(topic, chunk=10))  # more than QUEUE: overflows
        for _ in range(5):
            topic.publish(10)
            await asyncio.sleep(0.01)
            time.sleep(0.1)  # the worker's loop busy elsewhere, twice the slow-write time
        await until(lambda: len(client.alerts()) == topic.total())
        feed.closing = True
        await delivery
        fetches.cancel()
        assert client.errors() == []
        each_once_in_order(client, [0, 0])

    asyncio.run(run())


def test_a_long_read_of_the_topic_that_gets_closer_is_not_too_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alert_feed, "CATCH_UP_PROGRESS_SECONDS", 0.01)
    monkeypatch.setattr(Reader, "pause", 0.004)  # many progress periods end while it reads

    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(400)
        topic.tail(400)
        sub = feed.subscribe(AlertFilter())
        readers = read_topic(feed, topic)
        client = Client()
        await until_level(feed, sub, client, readers, timeout=10)
        assert client.errors() == []
        assert len(client.alerts()) == 400

    asyncio.run(run())


def test_only_what_the_filter_selects_is_sent_and_the_rest_is_read_past() -> None:
    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(40)
        for records in topic.records.values():
            for record in records:
                record.alert["account_id"] = "A" if record.offset % 3 == 0 else "B"
        topic.tail(40)
        sub = feed.subscribe(AlertFilter(accounts=frozenset({"A"})))
        readers = read_topic(feed, topic)
        client = Client()
        await until_level(feed, sub, client, readers)
        assert sorted(client.alerts()) == [(p, o) for p in (0, 1) for o in range(0, 20, 3)]
        # the last event's id is past what was read after it too: p0's 19 came before p1's 18
        events = [b for b in b"".join(client.writes).split(b"\n\n") if b.startswith(b"id: ")]
        assert events[-1].startswith(b"id: 20.19\n")

    asyncio.run(run())


def test_a_read_of_the_topic_that_gets_no_closer_to_the_end_is_too_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alert_feed, "CATCH_UP_PROGRESS_SECONDS", 0.05)
    monkeypatch.setattr(Reader, "pause", 0.002)

    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(20)
        topic.tail(20)
        sub = feed.subscribe(AlertFilter())
        # per record read, 3 more come and the tailer reads them: the distance only grows
        readers = read_topic(feed, topic, arrivals=3, tailed=3, reads_with_arrivals=10**9)
        client = Client()
        await asyncio.wait_for(feed.deliver(sub, [0, 0], client), 5)
        assert len(client.errors()) == 1 and "no closer than" in client.errors()[0]
        each_once_in_order(client, [0, 0])
        assert len(readers) == 1 and readers[0].closed

    asyncio.run(run())


def test_a_read_of_the_topic_that_stalls_ends_the_stream_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alert_feed, "CATCH_UP_STALL_SECONDS", 0.05)

    async def nothing(self: Reader) -> list[FeedRecord]:
        await asyncio.sleep(0.01)
        return []  # the broker answers, with nothing

    monkeypatch.setattr(Reader, "fetch", nothing)

    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(20)
        topic.tail(20)
        sub = feed.subscribe(AlertFilter())
        readers = read_topic(feed, topic)
        client = Client()
        await asyncio.wait_for(feed.deliver(sub, [0, 0], client), 5)
        assert len(client.errors()) == 1 and "stalled on partitions [0, 1]" in client.errors()[0]
        assert readers[0].closed

    asyncio.run(run())


def test_a_client_gone_during_a_read_of_the_topic_closes_the_reader() -> None:
    async def run() -> None:
        feed, topic = new_feed()
        topic.publish(20)
        topic.tail(20)
        sub = feed.subscribe(AlertFilter())
        readers = read_topic(feed, topic)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(feed.deliver(sub, [0, 0], Client(gone_at=4)), 5)
        assert len(readers) == 1 and readers[0].closed

    asyncio.run(run())
