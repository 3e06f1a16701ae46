"""The worker's HTTP API (bound to 127.0.0.1 by default): health and read-only SQL.

Who may call what is decided in front of every view by streams/web/guard.py.

The embedded warehouse is locked to one process (the worker's loader child, streams/loader_child.py,
or the worker itself with PW_WAREHOUSE_LOADER=inprocess), so `partnerwatch sql` sends its query
here while the worker runs.

User queries run on a pool of their own, `PW_SQL_MAX_CONCURRENT` threads: one more query is
answered 429 with `Retry-After` at once, so a token holder cannot take the threads (the event
loop's default executor) that the worker's own warehouse calls need, nor more than that many
times `PW_SQL_MAX_MEMORY_USAGE` of the engine's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.forensics.sql_guard import UnsafeQuery
from sinks.clickhouse import SqlLimits, WarehouseError, run_user_sql
from sinks.metrics import SQL_REFUSED_BUSY, SQL_RUNNING
from sinks.user_sql import BUSY_HEADER
from sinks.warehouse_remote import Unanswered
from streams.app import app, settings
from streams.child_process import asked_samples, exposition
from streams.ingest import ingest_service
from streams.loader_instance import loader_service
from streams.provider_stage_instance import provider_stage
from streams.warehouse_service import health
from streams.web.ingest import producer_service, signature_ledger

log = structlog.get_logger(__name__)


@app.page("/v1/health")
class Health(web.View):
    async def get(self, request: web.Request) -> web.Response:
        # POST /v1/events answers 503 until its producer has started, and signed requests until the
        # replay ledger has read back (streams/web/signatures.py).
        ingest_ready = producer_service.producer is not None and signature_ledger.ready
        status, body = health(
            loader_service.loader,
            ingest_ready,
            await _geoip(),
            external=loader_service.external,
            warehouse_open=loader_service.warehouse is not None,
            ingest=ingest_service.health(),
            provider_stage=dict(provider_stage.health()),
            loader_process=await loader_service.process_health(),
        )
        return self.json(body, status=status)


async def _geoip() -> dict[str, Any]:
    """The geoip data's sources and dates (detectors/geo.py), computed once in an executor (the
    bundled data loads in ~0.3 s the first time, if no detector has looked up an address yet)."""
    global _geoip_health
    if _geoip_health is None or time.monotonic() - _geoip_health[0] > 3600:  # ages by the day
        from detectors import geo

        loop = asyncio.get_running_loop()
        try:
            value = await loop.run_in_executor(None, geo.staleness, settings.geoip_max_age_days)
        except Exception as exc:  # a broken mmdb path: say so, health itself goes on
            return {"warning": f"geoip data unavailable: {type(exc).__name__}: {exc}"[:300]}
        if "warning" in value:
            log.warning("geoip.stale", warning=value["warning"])
        _geoip_health = (time.monotonic(), value)
    return _geoip_health[1]


_geoip_health: tuple[float, dict[str, Any]] | None = None


@app.page("/metrics")
class Metrics(web.View):
    async def get(self, request: web.Request) -> web.Response:
        # `?name[]=...`: those samples only, as prometheus_client's own exposition answers that
        # query (blank names ignored, as parse_qs drops them); a child none of whose samples
        # are asked for is not read. A probe that wants one figure then cost the worker about 0.3 ms
        # of CPU after 100,000 events, not the whole registry's 10.6 (docs/performance.md).
        names = asked_samples(request.query)
        await provider_stage.scrape(names)  # PW_PROVIDER_STAGE=process: the child's stage figures
        await loader_service.scrape(names)  # PW_WAREHOUSE_LOADER=process: its loader figures
        return self.bytes(exposition(names), content_type=CONTENT_TYPE_LATEST.split(";")[0])


#: Seconds a client refused as busy is told to wait (`Retry-After`).
BUSY_RETRY_SECONDS = 1


class _Slots:
    """At most `limit` user queries at once, each on a thread of `pool`; their cancels on
    `cancels`, as many threads, so a cancel neither waits behind the queries nor takes the
    default executor's threads (both made on first use).

    A slot is taken by the event loop's thread and given back there (`give_when_done`) only
    once the thread of the query's last step has finished with it: a query whose client went
    away, or whose handler was cancelled, keeps its slot until the engine has stopped it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._pool: ThreadPoolExecutor | None = None
        self._cancels: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="pw-user-sql")
        return self._pool

    @property
    def cancels(self) -> ThreadPoolExecutor:
        if self._cancels is None:
            self._cancels = ThreadPoolExecutor(self.limit, thread_name_prefix="pw-user-sql-cancel")
        return self._cancels

    def take(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        SQL_RUNNING.set(self.running)
        return True

    def give(self) -> None:
        self.running -= 1
        SQL_RUNNING.set(self.running)

    def give_when_done(self, step: Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        """Give the slot back, on `loop`, once `step` (run on `pool`) is done."""

        def done(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to give back to
                loop.call_soon_threadsafe(self.give)

        step.add_done_callback(done)


slots = _Slots(settings.sql_max_concurrent)


def _cancel_opened(opening: Future[Any]) -> None:
    """A query opened for a handler that is gone: cancel it (on the cancel pool)."""
    if not opening.cancelled() and opening.exception() is None:
        with contextlib.suppress(RuntimeError):  # the pool shut down: the worker is stopping
            slots.cancels.submit(opening.result().cancel)


@app.page("/v1/sql")
class Sql(web.View):
    async def post(self, request: web.Request) -> web.Response:
        # the bearer token was checked by streams/web/guard.py (every route but health, metrics, the page)
        try:
            body: Any = await request.json()
        except ValueError:
            return self.json(
                {"error": 'body must be JSON: {"query": ..., "params": {...}}'}, status=400
            )
        query = body.get("query") if isinstance(body, dict) else None
        params = body.get("params") or {} if isinstance(body, dict) else {}
        if not isinstance(query, str) or not isinstance(params, dict):
            return self.json({"error": "query must be a string and params an object"}, status=400)
        warehouse = loader_service.warehouse
        if warehouse is None:
            return self.json({"error": "the warehouse is not open yet"}, status=503)
        if not slots.take():
            SQL_REFUSED_BUSY.inc()
            return self.json(
                {
                    "error": f"{slots.limit} user queries are running (PW_SQL_MAX_CONCURRENT):"
                    " try again shortly"
                },
                status=429,
                headers={"Retry-After": str(BUSY_RETRY_SECONDS), BUSY_HEADER: "sql"},
            )
        loop = asyncio.get_running_loop()
        # off the event loop: with the loader process (PW_WAREHOUSE_LOADER=process) a round trip
        try:
            opening = slots.pool.submit(
                warehouse.user_query, params, SqlLimits.from_settings(settings)
            )
        except BaseException:
            slots.give()
            raise
        try:
            job = await asyncio.wrap_future(opening)
        except WarehouseError as exc:
            slots.give_when_done(opening, loop)
            return self.json({"error": str(exc)}, status=400 if exc.code else 503)
        except BaseException:
            # the handler cancelled (or the step failed otherwise): what opens is cancelled
            opening.add_done_callback(_cancel_opened)
            slots.give_when_done(opening, loop)
            raise
        # Admitted by the engine's parser (pipeline/forensics/sql_guard.py), run read-only under
        # the PW_SQL_* limits, off the event loop; cancelled if the client goes away meanwhile.
        try:
            step = slots.pool.submit(run_user_sql, job, query)
        except BaseException:
            slots.give()
            slots.cancels.submit(job.cancel)
            raise
        slots.give_when_done(step, loop)
        log.info("sql.started", chars=len(query))
        future = asyncio.wrap_future(step)
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=0.2)
                transport = getattr(
                    request, "transport", None
                )  # aiohttp's request under Faust's web.Request
                if not future.done() and (transport is None or transport.is_closing()):
                    await asyncio.wrap_future(slots.cancels.submit(job.cancel))
                    log.info("sql.client_gone", action="cancelled")
                    try:
                        await future
                        log.info("sql.finished_after_client_gone")
                    except (UnsafeQuery, WarehouseError) as exc:
                        log.info(
                            "sql.cancelled", code=getattr(exc, "code", None), error=str(exc)[:200]
                        )
                    return self.json({"error": "client disconnected"}, status=499)
        except BaseException:
            if not step.done():  # the handler cancelled, or the cancel failed: stop the query
                slots.cancels.submit(job.cancel)
            raise
        try:
            result = future.result()
        except UnsafeQuery as exc:
            return self.json({"error": f"query refused: {exc}"}, status=400)
        except Unanswered as exc:
            # the loader process gone, restarting, busy or not answering in time (its limit and
            # 30 s): the warehouse's failure, not the query's
            return self.json({"error": str(exc)}, status=503)
        except WarehouseError as exc:
            return self.json({"error": str(exc)}, status=400)
        return self.json({"columns": result.columns, "types": result.types, "rows": result.rows})
