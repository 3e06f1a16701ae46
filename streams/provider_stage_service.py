"""The provider stage inside the Faust worker (`PW_PROVIDER_STAGE=worker`): see streams/provider_stage.py."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from mode import Service

from pipeline.config import Settings
from streams.provider_stage import ProviderStage

log = structlog.get_logger(__name__)


class ProviderStageService(Service):
    """Runs the stage inside the Faust worker's lifecycle (`PW_PROVIDER_STAGE=worker`)."""

    stage: ProviderStage | None = None

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        if self.settings.provider_stage != "worker":
            log.info("provider_stage.off", reason="PW_PROVIDER_STAGE=off")
            return
        self.stage = ProviderStage(self.settings)
        self.stage.start()

    def health(self) -> dict[str, Any]:
        """For /v1/health: off, running, or stopped (with the exception that ended its thread)."""
        if self.stage is None:
            return {"status": "off", "error": ""}
        if self.stage.alive():
            return {"status": "running", "error": ""}
        return {"status": "stopped", "error": self.stage.crashed}

    async def on_stop(self) -> None:
        if self.stage is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.stage.stop)
