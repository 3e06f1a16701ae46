"""streams/web/sql.py: the worker's cap on user queries (PW_SQL_MAX_CONCURRENT), through the real
`Sql.post` view with a stand-in warehouse whose queries run on real threads.

A slot goes back only once the query's thread is done with it: not when its handler is cancelled
(aiohttp cancels handlers at shutdown, and on a client's disconnect when `handler_cancellation`
is on), nor when its cancel fails. The integration test with a real worker and engine is
tests/security/test_sql_surface.py::test_worker_runs_at_most_its_cap_of_user_queries_and_answers_the_rest_429.
"""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any

import pytest

import streams.web.sql as sql


class _Job:
    def __init__(self, cancel_fails: bool) -> None:
        self.stop = threading.Event()
        self.cancels = 0
        self.cancel_fails = cancel_fails

    def cancel(self) -> None:
        self.cancels += 1
        if self.cancel_fails:
            raise RuntimeError("the cancel failed")
        self.stop.set()


class _Warehouse:
    def __init__(self, cancel_fails: bool = False) -> None:
        self.cancel_fails = cancel_fails
        self.jobs: list[_Job] = []

    def user_query(self, params: dict[str, Any], limits: Any) -> _Job:
        job = _Job(self.cancel_fails)
        self.jobs.append(job)
        return job


class _Request:
    def __init__(self) -> None:
        self.gone = False
        self.transport = types.SimpleNamespace(is_closing=lambda: self.gone)

    async def json(self) -> dict[str, Any]:
        return {"query": "SELECT 1"}


busy: set[int] = set()


def _run_user_sql(job: _Job, query: str) -> Any:
    """A query of up to 5 s that stops early only when cancelled."""
    busy.add(threading.get_ident())
    try:
        job.stop.wait(5.0)
    finally:
        busy.discard(threading.get_ident())
    return types.SimpleNamespace(columns=["x"], types=["UInt8"], rows=[[1]])


@pytest.fixture
def view(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(sql, "slots", sql._Slots(2))
    monkeypatch.setattr(sql, "run_user_sql", _run_user_sql)
    v = sql.Sql.__new__(sql.Sql)
    v.json = lambda doc, status=200, headers=None: (status, doc, headers)  # type: ignore[method-assign]
    return v


async def _until(check: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def test_the_cap_refuses_one_more_with_429_and_retry_after(
    view: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = _Warehouse()
    monkeypatch.setattr(sql.loader_service, "warehouse", warehouse)

    async def main() -> None:
        requests = [_Request(), _Request()]
        running = [asyncio.create_task(view.post(r)) for r in requests]
        await _until(lambda: len(busy) == 2)
        status, doc, headers = await view.post(_Request())
        assert status == 429 and "PW_SQL_MAX_CONCURRENT" in doc["error"]
        assert headers == {"Retry-After": "1", "PartnerWatch-Busy": "sql"}
        for r in requests:
            r.gone = True
        answers = await asyncio.gather(*running)
        assert [a[0] for a in answers] == [499, 499]
        assert all(job.cancels == 1 for job in warehouse.jobs)
        await _until(lambda: sql.slots.running == 0)
        again = _Request()  # the slots are free again: a query is admitted and runs
        task = asyncio.create_task(view.post(again))
        await _until(lambda: len(busy) == 1)
        again.gone = True
        assert (await task)[0] == 499

    asyncio.run(main())


def test_a_cancelled_handler_keeps_its_slot_until_its_query_stops(
    view: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = _Warehouse()
    monkeypatch.setattr(sql.loader_service, "warehouse", warehouse)

    async def main() -> None:
        tasks = [asyncio.create_task(view.post(_Request())) for _ in range(2)]
        await _until(lambda: len(busy) == 2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # the queries are cancelled in the engine, and only then are their slots free
        await _until(lambda: all(job.cancels == 1 for job in warehouse.jobs))
        await _until(lambda: not busy and sql.slots.running == 0)

    asyncio.run(main())


def test_a_failed_cancel_keeps_the_slot_while_the_query_runs(
    view: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = _Warehouse(cancel_fails=True)
    monkeypatch.setattr(sql.loader_service, "warehouse", warehouse)

    async def main() -> None:
        request = _Request()
        task = asyncio.create_task(view.post(request))
        await _until(lambda: len(busy) == 1)
        request.gone = True
        with pytest.raises(RuntimeError, match="the cancel failed"):
            await task
        await asyncio.sleep(0.2)
        assert busy and sql.slots.running == 1  # still running in the engine: still counted
        status, _, _ = await view.post(_Request())  # one slot of two left
        assert status != 429
        await _until(lambda: not busy and sql.slots.running == 0, 10.0)

    asyncio.run(main())
