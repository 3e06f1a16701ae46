"""Records fetched and then dropped unread (streams/faust_internals.py `release_dropped_fetches`).

aiokafka's `PartitionRecords` iterates its fetch through a generator whose frame holds the
`PartitionRecords` itself; the cycle is broken only when the iteration ends. A result refused
because its partition was paused or sought, or dropped by the fetcher with records left, stayed
in that cycle with its fetch's bytes until the collector's middle generation ran. These tests
run with the collector off, so only reference counting frees anything, on aiokafka's own
classes (a real subscription state, record batches built by aiokafka's builder)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.record.memory_records import MemoryRecords

from streams import faust_internals
from tests.unit.test_records_as_fetched import TP, VALUES, _fetched


@pytest.fixture(autouse=True)
def _restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test installs what it needs; the class is as it was afterwards, the collector on."""
    monkeypatch.setattr(FetchResult, "check_assignment", faust_internals._LIBRARY_CHECK_ASSIGNMENT)
    monkeypatch.delattr(FetchResult, "__del__", raising=False)  # put back if it was there
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        if "__del__" in vars(
            FetchResult
        ):  # the test's own install (monkeypatch restores any other)
            del FetchResult.__del__


def _on_a_loop(check: Callable[[Any], None]) -> None:
    """`check(assignment)` on a running loop, as aiokafka's consumer state expects (it creates
    futures; none is awaited here): a partition assigned by hand at offset 40, as
    `consumer.assign` and `seek` leave it."""

    async def run() -> None:
        state = SubscriptionState()
        state.assign_from_user({TP})
        state.subscription.assignment.state_value(TP).seek(40)
        check(state.subscription.assignment)

    asyncio.run(run())


def _result(assignment: Any) -> tuple[FetchResult, weakref.ref[Any]]:
    records = PartitionRecords(
        TP, MemoryRecords(_fetched()), [], 40, None, None, True, READ_COMMITTED
    )
    return FetchResult(TP, assignment=assignment, partition_records=records, backoff=0), (
        weakref.ref(records)
    )


def test_the_library_alone_keeps_a_paused_partitions_records() -> None:
    """What the hook is for: without it, the refused records outlive their last use."""

    def check(assignment: Any) -> None:
        result, records = _result(assignment)
        assignment.state_value(TP).pause()
        assert result.getall(None) == []
        assert not result.has_more()
        assert records() is not None  # held by its own iterator's frame
        gc.collect()
        assert records() is None

    _on_a_loop(check)


def test_a_paused_partitions_records_are_freed_when_refused() -> None:
    def check(assignment: Any) -> None:
        faust_internals.release_dropped_fetches()
        result, records = _result(assignment)
        assignment.state_value(TP).pause()
        assert result.getall(None) == []
        assert not result.has_more()
        assert records() is None

    _on_a_loop(check)


def test_records_of_a_sought_partition_are_freed_when_refused() -> None:
    def check(assignment: Any) -> None:
        faust_internals.release_dropped_fetches()
        result, records = _result(assignment)
        assignment.state_value(TP).seek(7)  # the position moved: the fetch is for another offset
        assert result.getone() is None
        assert records() is None

    _on_a_loop(check)


def test_a_result_dropped_with_records_left_frees_them() -> None:
    """The fetcher deletes a result on a seek, a reset or a lost assignment: `__del__`."""

    def check(assignment: Any) -> None:
        faust_internals.release_dropped_fetches()
        result, records = _result(assignment)
        assert [r.offset for r in result.getall(1)] == [40]
        assert result.has_more()
        del result
        assert records() is None

    _on_a_loop(check)


def test_the_library_alone_keeps_a_dropped_results_records() -> None:
    def check(assignment: Any) -> None:
        result, records = _result(assignment)
        assert len(result.getall(1)) == 1
        del result
        assert records() is not None

    _on_a_loop(check)


def test_records_read_to_the_end_are_the_librarys() -> None:
    """An assigned, unpaused partition: every record, as without the hook; installing twice
    changes nothing."""

    def check(assignment: Any) -> None:
        faust_internals.release_dropped_fetches()
        faust_internals.release_dropped_fetches()
        result, records = _result(assignment)
        first = result.getall(2)
        rest = result.getall(None)
        got = [(r.offset, r.key, r.value) for r in first + rest]
        assert got == [(40 + i, key, value) for i, (key, value) in enumerate(VALUES)]
        assert not result.has_more()
        assert records() is None

    _on_a_loop(check)


def test_every_consumer_of_the_per_event_path_installs_it() -> None:
    """The worker (streams/app.py: Faust's consumers too), and where the ingest service, the
    provider stage (also its own process, `partnerwatch provider-stage`, which does not import
    the app) and the warehouse loader start their consumers: the calls, checked on the parsed
    code."""
    import ast
    import inspect

    from streams import app, ingest, provider_stage, warehouse_loader

    for module in (app, ingest, provider_stage, warehouse_loader):
        calls = [
            n
            for n in ast.walk(ast.parse(inspect.getsource(module)))
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "release_dropped_fetches"
        ]
        assert calls, module.__name__
