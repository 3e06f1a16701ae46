"""The alert publisher's `delivered` (streams/alert_publisher.py): a partition commits its
offsets only after it returns, so it must not return before every alert published so far is
acknowledged, also when another partition's call took them off the list and still waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.alert_publisher import AlertPublisher


class Producer:
    """Each send's acknowledgement is a future the test resolves."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes, partition: int) -> Any:
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_call_waits_for_alerts_an_earlier_call_took_and_still_waits_for() -> None:
    async def run() -> None:
        publisher, producer = AlertPublisher(), Producer()
        publisher._producer = producer  # type: ignore[assignment]
        await publisher.publish(b"A1", b"{}", 0)  # partition 0's alert
        first = asyncio.ensure_future(publisher.delivered())  # partition 1 commits
        await settle()
        second = asyncio.ensure_future(publisher.delivered())  # partition 0 commits
        await settle()
        assert not first.done() and not second.done()
        producer.acks[0].set_result(None)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        await asyncio.wait_for(publisher.delivered(), 5)  # nothing outstanding

    asyncio.run(run())


def test_a_failed_delivery_fails_the_calls_that_waited_for_it() -> None:
    async def run() -> None:
        publisher, producer = AlertPublisher(), Producer()
        publisher._producer = producer  # type: ignore[assignment]
        await publisher.publish(b"A1", b"{}", 0)
        first = asyncio.ensure_future(publisher.delivered())
        await settle()
        second = asyncio.ensure_future(publisher.delivered())
        await settle()
        producer.acks[0].set_exception(RuntimeError("not delivered"))
        for call in (first, second):
            with pytest.raises(RuntimeError, match="not delivered"):
                await call
        await asyncio.wait_for(publisher.delivered(), 5)  # reported: not again

    asyncio.run(run())
