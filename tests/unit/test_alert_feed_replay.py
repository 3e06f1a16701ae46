"""A resuming stream client's catch-up (streams/alert_feed.py `replay`): alerts that arrive while
history is read wait in the client's bounded queue; more than it holds is the server's doing,
not the client's, so the read goes on to the tailer's new position instead of dropping the
client, a bounded number of times. Whatever happens, the client sees each record once, in order.

The topic and the tailer are simulated here (the real ones: tests/live_feed/test_feed.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from pipeline.config import Settings
from streams.alert_feed import CATCH_UP_ROUNDS, AlertFeed, AlertFilter, FeedRecord, Subscriber

QUEUE = 4


class Topic:
    """Two partitions of alerts, and the feed's tailer, which may be behind them: `publish` puts
    an alert on the topic, `tail` hands the oldest ones the tailer has not read to the feed."""

    def __init__(self, feed: AlertFeed, before: int, tailed: int) -> None:
        self.feed = feed
        self.records: dict[int, list[FeedRecord]] = {0: [], 1: []}
        self.pending: list[FeedRecord] = []
        feed.positions = [0, 0]
        feed.partitions = 2
        for i in range(before):
            self.publish(i % 2)
        self.tail(tailed)

    def publish(self, partition: int) -> None:
        records = self.records[partition]
        record = FeedRecord(partition, len(records), {"alert_id": f"a{partition}-{len(records)}"})
        records.append(record)
        self.pending.append(record)

    def tail(self, count: int) -> None:
        for record in self.pending[:count]:
            self.feed._fan_out(record)
        del self.pending[:count]


def attach(
    feed: AlertFeed, topic: Topic, arrivals: int, tailed: int, reads_with_arrivals: int
) -> None:
    """The feed's own read of history, on the simulated topic: per record it yields, `arrivals`
    new alerts are published (for its first `reads_with_arrivals` records) and the tailer reads
    `tailed` more."""
    reads = 0

    async def catch_up(resume: list[int], until: list[int]) -> AsyncGenerator[FeedRecord, None]:
        nonlocal reads
        for p in range(min(len(resume), len(until))):
            for record in topic.records[p][resume[p] : until[p]]:
                yield record
                reads += 1
                if reads <= reads_with_arrivals:
                    for _ in range(arrivals):
                        topic.publish(reads % 2)
                topic.tail(tailed)

    feed.catch_up = catch_up  # type: ignore[method-assign]


async def client(feed: AlertFeed, sub: Subscriber, resume: list[int]) -> list[FeedRecord]:
    """What the connection sends (streams/web/alerts.py): the replay, then its queue, skipping
    what the replay already sent; stops where the queue is empty or it overflowed."""
    position = list(resume)
    sent = []
    async for record in feed.replay(sub, resume):
        position[record.partition] = record.offset + 1
        sent.append(record)
    while not sub.overflowed and not sub.queue.empty():
        record = sub.queue.get_nowait()
        if record.offset < position[record.partition]:
            continue
        position[record.partition] = record.offset + 1
        sent.append(record)
    return sent


def feed_and_topic(before: int, tailed: int) -> tuple[AlertFeed, Topic]:
    feed = AlertFeed(Settings(sse_queue_size=QUEUE))
    return feed, Topic(feed, before, tailed)


def in_order_once(sent: list[FeedRecord], topic: Topic, resume: list[int]) -> None:
    for p in topic.records:
        mine = [r.offset for r in sent if r.partition == p]
        assert mine == list(range(resume[p], resume[p] + len(mine))), (p, mine)


def test_a_burst_during_the_catch_up_is_read_from_the_topic_and_the_client_stays() -> None:
    async def run() -> None:
        # 40 alerts on the topic, the tailer has read 10 of them when the client resumes
        feed, topic = feed_and_topic(before=40, tailed=10)
        resume = [2, 3]
        sub = feed.subscribe(AlertFilter())
        attach(feed, topic, arrivals=3, tailed=4, reads_with_arrivals=30)
        sent = await client(feed, sub, resume)
        assert not sub.overflowed and not topic.pending
        in_order_once(sent, topic, resume)
        for p, records in topic.records.items():  # every record, up to the topic's end
            assert [r.offset for r in sent if r.partition == p][-1] == len(records) - 1

    asyncio.run(run())


def test_a_tailer_that_always_outruns_the_read_leaves_the_client_too_slow_after_the_rounds() -> (
    None
):
    async def run() -> None:
        feed, topic = feed_and_topic(before=20, tailed=20)
        resume = [0, 0]
        sub = feed.subscribe(AlertFilter())
        attach(feed, topic, arrivals=3, tailed=3, reads_with_arrivals=10**9)
        rounds = []
        rearm = feed.rearm

        def counting(s: Subscriber) -> None:
            rounds.append(list(s.start))
            rearm(s)

        feed.rearm = counting  # type: ignore[method-assign,assignment]
        sent = await client(feed, sub, resume)
        assert sub.overflowed  # the connection tells the client it is too slow
        assert len(rounds) == CATCH_UP_ROUNDS - 1
        in_order_once(sent, topic, resume)  # what it got has no gap and no repeat: it can resume

    asyncio.run(run())
