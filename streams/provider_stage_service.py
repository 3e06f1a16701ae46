"""The provider stage of the Faust worker: a thread of it (`PW_PROVIDER_STAGE=worker`, see
streams/provider_stage.py) or a child process it runs (`process`, streams/provider_stage_child.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import structlog
from mode import Service

from pipeline.config import Settings
from streams.provider_stage import ProviderStage
from streams.provider_stage_child import StageProcess

log = structlog.get_logger(__name__)


class ProviderStageService(Service):
    """Runs the stage inside the Faust worker's lifecycle (`PW_PROVIDER_STAGE=worker` or
    `process`)."""

    stage: ProviderStage | None = None
    child: StageProcess | None = None

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        if self.settings.provider_stage == "off":
            log.info("provider_stage.off", reason="PW_PROVIDER_STAGE=off")
            return
        if self.settings.provider_stage == "process":
            self.child = StageProcess(self.settings)
            await self.child.start()
            self.add_future(self.child.supervise())
            return
        self.stage = ProviderStage(self.settings)
        self.stage.start()

    def health(self) -> dict[str, Any]:
        """For /v1/health: off, running, or stopped (with the exception that ended its thread);
        as a child process also restarting (with how the last one ended)."""
        if self.child is not None:
            return self.child.health()
        if self.stage is None:
            return {"status": "off", "error": ""}
        if self.stage.alive():
            return {"status": "running", "error": ""}
        return {"status": "stopped", "error": self.stage.crashed}

    async def scrape(self, names: Collection[str] = ()) -> None:
        """Before the worker's /metrics answers: the child's stage figures (process mode); `names`:
        the sample names asked for (none: all; `ChildProcess.scrape`)."""
        if self.child is not None:
            await self.child.scrape(names)

    async def on_stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
        if self.stage is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.stage.stop)
