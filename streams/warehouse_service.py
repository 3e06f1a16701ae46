"""The worker's warehouse and its health: the loader in the worker or elsewhere, GET /v1/health.

`WarehouseLoaderService` opens the warehouse at start and runs the loader
(streams/warehouse_loader.py) inside the worker (PW_WAREHOUSE_LOADER=inprocess) or leaves it to
`partnerwatch loader` (`external`); `health` is the worker's /v1/health answer.
"""

from __future__ import annotations

from typing import Any

import structlog
from mode import Service

from pipeline.config import Settings
from sinks.clickhouse import Warehouse, open_warehouse
from streams.warehouse_loader import WarehouseLoader

log = structlog.get_logger(__name__)


def loader_mode_problem(settings: Settings) -> str:
    """Why the worker cannot run with PW_WAREHOUSE_LOADER as set (empty when it can)."""
    if settings.warehouse_loader == "external" and not settings.clickhouse_url:
        return (
            "PW_WAREHOUSE_LOADER=external needs a ClickHouse server (PW_CLICKHOUSE_URL): the embedded "
            "warehouse opens in one process at a time, and the worker needs it for /v1/sql, alert "
            "actions and digests, so with it the loader runs inside the worker (inprocess)"
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
) -> tuple[int, dict[str, Any]]:
    """GET /v1/health of the worker: HTTP status and body. Anything but "ok" answers 503, so a
    container healthcheck (and any probe that checks the status code) sees a crashed or failing
    loader. With `external`, the loader is another process (its own /v1/health): the worker is
    ok once its warehouse connection (for SQL, alert actions, digests) is open."""
    body: dict[str, Any]
    if external:
        status = "ok" if warehouse_open else "starting"
        body = {"status": status, "warehouse_error": "" if warehouse_open else "starting"}
    else:
        status, body = loader_health(loader)
    body["warehouse_loader"] = "external" if external else "inprocess"
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


class WarehouseLoaderService(Service):
    """The worker's warehouse: opened at start, with the loader running inside the worker's
    lifecycle (PW_WAREHOUSE_LOADER=inprocess) or elsewhere (`external`: `partnerwatch loader`)."""

    loader: WarehouseLoader | None = None
    warehouse: Warehouse | None = None

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
        if self.external:
            self.warehouse = open_warehouse(
                self.settings
            )  # migrated by the loader (and `partnerwatch migrate`)
            log.info("warehouse.loader_external", backend=type(self.warehouse).__name__)
            return
        self.loader = WarehouseLoader(self.settings)
        self.warehouse = self.loader.warehouse
        self.loader.start()
        log.info("warehouse.loader_started", backend=type(self.loader.warehouse).__name__)

    async def on_stop(self) -> None:
        if self.loader is not None:
            self.loader.stop()
        if self.warehouse is not None:
            self.warehouse.close()
