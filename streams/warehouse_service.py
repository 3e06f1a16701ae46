"""The worker's warehouse and its health: the loader in the worker or elsewhere, GET /v1/health.

`WarehouseLoaderService` opens the warehouse at start and runs the loader
(streams/warehouse_loader.py) inside the worker (PW_WAREHOUSE_LOADER=inprocess), in a child
process that owns the embedded warehouse and answers the worker's queries
(`process`, streams/loader_child.py), or leaves it to `partnerwatch loader` (`external`);
`health` is the worker's /v1/health answer.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from mode import Service

from pipeline.config import Settings
from sinks.clickhouse import Warehouse, open_warehouse
from streams.loader_child import LoaderChild
from streams.warehouse_loader import WarehouseLoader

log = structlog.get_logger(__name__)


def loader_mode_problem(settings: Settings) -> str:
    """Why the worker cannot run with PW_WAREHOUSE_LOADER as set (empty when it can)."""
    if settings.warehouse_loader == "external" and not settings.clickhouse_url:
        return (
            "PW_WAREHOUSE_LOADER=external needs a ClickHouse server (PW_CLICKHOUSE_URL): the embedded "
            "warehouse opens in one process at a time, and the worker needs it for /v1/sql, alert "
            "actions and digests, so with it the loader runs in the worker's own child process "
            "(process) or inside the worker (inprocess)"
        )
    return ""


def loader_health(loader: WarehouseLoader | None) -> tuple[str, dict[str, Any]]:
    """The loader's status ("ok", "starting", "degraded") and its figures."""
    status, why = ("starting", "starting") if loader is None else loader.health()
    return status, {
        "status": status,
        "stored_events": loader.stored_events if loader else 0,
        "stored_alerts": loader.stored_alerts if loader else 0,
        "skipped_stored": loader.skipped if loader else 0,
        "warehouse_error": why,
        "loader_crashes": loader.crashes if loader else 0,
        "loader_dead_letters": loader.deadlettered if loader else 0,
    }


def health(
    loader: WarehouseLoader | None,
    http_ingest_ready: bool,
    geoip: dict[str, Any] | None = None,
    *,
    external: bool = False,
    warehouse_open: bool = False,
    ingest: dict[str, Any] | None = None,
    provider_stage: dict[str, Any] | None = None,
    loader_process: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """GET /v1/health of the worker: HTTP status and body. Anything but "ok" answers 503, so a
    container healthcheck (and any probe that checks the status code) sees a crashed or failing
    loader. With `external`, the loader is another process (its own /v1/health): the worker is
    ok once its warehouse connection (for SQL, alert actions, digests) is open. With
    `loader_process` (`LoaderChild.health` and its last /v1/health answer, PW_WAREHOUSE_LOADER=
    process) the loader's figures are the child's, and a child that is not running, or whose
    warehouse does not answer yet, is not ok."""
    body: dict[str, Any]
    if loader_process is not None:
        status, body = _child_loader_health(loader_process, warehouse_open)
    elif external:
        status = "ok" if warehouse_open else "starting"
        body = {"status": status, "warehouse_error": "" if warehouse_open else "starting"}
    else:
        status, body = loader_health(loader)
    body["warehouse_loader"] = (
        "process" if loader_process is not None else "external" if external else "inprocess"
    )
    # POST /v1/events answers 503 until it can take events (streams/web/sql.py).
    body["http_ingest"] = "ready" if http_ingest_ready else "starting"
    if geoip is not None:  # detectors.geo.staleness: stale geoip data is a warning, not a 503
        body["geoip"] = geoip
    if ingest is not None:  # the ingest service (streams/ingest.py): partitions, batches, failure
        body["ingest"] = ingest
        if status == "ok" and ingest.get("status") == "failing":
            status = body["status"] = "degraded"
    if provider_stage is not None:  # the provider-wide stage's thread or child process
        body["provider_stage"] = provider_stage
        stage_down = provider_stage.get("status") in ("stopped", "restarting")
        if status == "ok" and stage_down and provider_stage["error"]:
            status = body["status"] = "degraded"
    return (200 if status == "ok" else 503), body


def _child_loader_health(
    process: dict[str, Any], warehouse_open: bool
) -> tuple[str, dict[str, Any]]:
    answer = dict(process.get("answer") or {})
    state = process.get("status", "starting")
    if state in ("stopped", "restarting"):
        status, why = "degraded", process.get("error") or f"the warehouse loader process is {state}"
    elif state == "starting" or not warehouse_open or not answer:
        status, why = "starting", "starting"
    else:
        status = answer.get("status", "degraded")
        if status not in ("ok", "starting", "degraded"):
            status = "degraded"
        why = str(answer.get("warehouse_error", ""))
    _, body = loader_health(None)
    body.update({k: answer[k] for k in body if k in answer and k != "status"})
    body["status"], body["warehouse_error"] = status, why
    body["loader_process"] = {k: v for k, v in process.items() if k != "answer"}
    return status, body


class WarehouseLoaderService(Service):
    """The worker's warehouse: opened at start, with the loader in a child process of the worker
    that owns the embedded warehouse (PW_WAREHOUSE_LOADER=process, the default), inside the
    worker's lifecycle (`inprocess`) or elsewhere (`external`: `partnerwatch loader`)."""

    loader: WarehouseLoader | None = None
    warehouse: Warehouse | None = None
    child: LoaderChild | None = None

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(**kwargs)

    @property
    def external(self) -> bool:
        return self.settings.warehouse_loader == "external"

    async def on_start(self) -> None:
        problem = loader_mode_problem(self.settings)
        if problem:
            raise RuntimeError(f"configuration error: {problem}")
        if self.settings.warehouse_loader == "process":
            # the embedded warehouse is the child's (it locks its folder): reached through it;
            # a ClickHouse server is reached directly, the child only loads it
            embedded = not self.settings.clickhouse_url
            self.child = LoaderChild(self.settings, serve=embedded)
            await self.child.start()
            self.add_future(self.child.supervise())
            if embedded:
                self.add_future(self._open_when_reachable(self.child))
            else:
                self.warehouse = open_warehouse(self.settings)
                log.info(
                    "warehouse.loader_started",
                    mode="process",
                    backend=type(self.warehouse).__name__,
                    pid=self.child.proc.pid if self.child.proc else None,
                )
            return
        if self.external:
            self.warehouse = open_warehouse(
                self.settings
            )  # migrated by the loader (and `partnerwatch migrate`)
            log.info("warehouse.loader_external", backend=type(self.warehouse).__name__)
            return
        self.loader = WarehouseLoader(self.settings)
        self.warehouse = self.loader.warehouse
        self.loader.start()
        log.info(
            "warehouse.loader_started",
            mode="inprocess",
            backend=type(self.loader.warehouse).__name__,
        )

    async def _open_when_reachable(self, child: LoaderChild) -> None:
        """The warehouse is the child's once it answers (it opens and migrates it first)."""
        while not self.should_stop and self.warehouse is None:
            if await child.reachable():
                self.warehouse = child.warehouse
                log.info(  # the same line as the other modes': the warehouse answers the worker
                    "warehouse.loader_started",
                    mode="process",
                    backend="EmbeddedWarehouse",
                    pid=child.proc.pid if child.proc else None,
                )
                return
            await self.sleep(0.2)

    async def process_health(self) -> dict[str, Any] | None:
        """PW_WAREHOUSE_LOADER=process: the child's state and its own /v1/health answer."""
        if self.settings.warehouse_loader != "process":
            return None
        if self.child is None:  # the web server answers before this service has started
            return {"status": "starting", "error": "", "mode": "process", "answer": {}}
        return {**self.child.health(), "answer": await self.child.refresh()}

    async def scrape(self, names: Collection[str] = ()) -> None:
        """Before the worker's /metrics answers: the child's loader figures (process mode); `names`:
        the sample names asked for (none: all; `ChildProcess.scrape`)."""
        if self.child is not None:
            await self.child.scrape(names)

    async def on_stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
        if self.loader is not None:
            self.loader.stop()
        if self.warehouse is not None:
            self.warehouse.close()
