"""The ingest consumer's fetch wait (streams/fetch_wait.py): short while records arrive or a
partition is paused, longer once nothing has come for a while, short again at the next record."""

from __future__ import annotations

import inspect

from aiokafka.consumer.fetcher import Fetcher

from streams import faust_internals
from streams.fetch_wait import BUSY_MS, IDLE_AFTER_SECONDS, IDLE_MS, FetchWait


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_idle_after_a_quiet_spell_and_busy_at_the_next_record() -> None:
    clock = Clock()
    wait = FetchWait(now=clock)
    assert wait.ms == BUSY_MS
    assert wait.update(busy=True) is None
    clock.t += IDLE_AFTER_SECONDS / 2
    assert wait.update(busy=False) is None  # not quiet for long enough
    assert wait.ms == BUSY_MS
    clock.t += IDLE_AFTER_SECONDS / 2
    assert wait.update(busy=False) == IDLE_MS
    assert wait.update(busy=False) is None  # already idle: nothing to change
    clock.t += 60
    assert wait.update(busy=False) is None
    assert wait.update(busy=True) == BUSY_MS  # the first fetch with records
    assert wait.ms == BUSY_MS
    clock.t += IDLE_AFTER_SECONDS - 0.01
    assert wait.update(busy=False) is None  # quiet counts from the last busy fetch


def test_a_paused_partition_keeps_it_busy() -> None:
    """`busy` is also true while a partition is paused (its records wait to be fetched): a
    backlog that fetches nothing for a while is not an idle worker."""
    clock = Clock()
    wait = FetchWait(now=clock)
    for _ in range(10):
        clock.t += IDLE_AFTER_SECONDS
        assert wait.update(busy=True) is None
    assert wait.ms == BUSY_MS


def test_idle_is_longer_than_busy() -> None:
    assert IDLE_MS > BUSY_MS


def test_the_fetcher_reads_the_wait_each_time_it_builds_a_request() -> None:
    """`faust_internals.set_fetch_max_wait` changes aiokafka's `Fetcher._fetch_max_wait_ms`;
    that works only while the fetcher reads it when it builds each fetch request."""
    source = inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms" in source
    assert "FetchRequest(" in source

    class Consumer:
        class _fetcher:
            _fetch_max_wait_ms = BUSY_MS

    faust_internals.set_fetch_max_wait(Consumer, IDLE_MS)
    assert Consumer._fetcher._fetch_max_wait_ms == IDLE_MS
