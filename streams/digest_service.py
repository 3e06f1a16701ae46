"""Periodic signed chain digests, made by the worker that owns the warehouse.

Every `PW_DIGEST_INTERVAL` seconds (when a digest key is configured) this service signs the
periods closed since the last run (`pipeline.forensics.digests.create_digests`), on the worker's warehouse
(the embedded engine is locked to the worker's loader process, which runs the queries; or to the
worker itself with PW_WAREHOUSE_LOADER=inprocess). The work runs in an executor thread, off the
event loop; the warehouse serializes it with the loader's inserts. Only the key id is logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from mode import Service

from pipeline.config import Settings
from pipeline.forensics.digests import create_digests
from pipeline.forensics.signing import Signer, SigningKeyError, configured_signer
from sinks.clickhouse import WarehouseError
from streams.app import app, settings
from streams.loader_instance import loader_service
from streams.warehouse_service import WarehouseLoaderService

log = structlog.get_logger(__name__)


class DigestService(Service):
    """Signs closed periods of every account's chain, on a timer."""

    def __init__(self, settings: Settings, loaders: WarehouseLoaderService, **kwargs: Any) -> None:
        self.settings = settings
        self.loaders = loaders
        self.runs = 0
        super().__init__(**kwargs)

    def _signer(self) -> Signer | None:
        if self.settings.digest_interval <= 0:
            return None
        try:
            return configured_signer(self.settings.digest_key_file, self.settings.digest_hmac_key)
        except SigningKeyError as exc:
            log.error("digest.key_unusable", error=str(exc))
            return None

    @Service.task
    async def _periodic(self) -> None:
        signer = self._signer()
        if signer is None:
            log.info("digest.periodic_off", reason="no digest key or PW_DIGEST_INTERVAL=0")
            return
        log.info("digest.periodic_on", key_id=signer.key_id, interval=self.settings.digest_interval)
        while not self.should_stop:
            await self.sleep(self.settings.digest_interval)
            warehouse = self.loaders.warehouse
            if warehouse is None or self.should_stop:
                continue
            await self.run_once(warehouse, signer)

    async def run_once(self, warehouse: Any, signer: Signer) -> None:
        s = self.settings
        try:
            made, problems = await asyncio.get_running_loop().run_in_executor(
                None,
                create_digests,
                warehouse,
                signer,
                s.digest_period,
                int(time.time() * 1000),
                int(s.digest_delay * 1000),
            )
        except WarehouseError as exc:
            log.error("digest.failed", error=str(exc))
            return
        self.runs += 1
        for problem in problems:
            log.warning("digest.chain_problem", problem=str(problem))
        if made:
            log.info("digest.signed", digests=len(made), key_id=signer.key_id)


digest_service = DigestService(settings, loader_service)
app.service(digest_service)  # type: ignore[arg-type]  # Faust accepts instances too
