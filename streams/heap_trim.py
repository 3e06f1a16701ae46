"""The worker's heap trim (streams/trim_thread.py says what and why), as a service of the Faust
app: started and stopped with the worker."""

from __future__ import annotations

import asyncio
from typing import Any

from mode import Service

from pipeline.config import Settings
from streams.app import app, settings
from streams.trim_thread import TrimThread


class HeapTrimmer(Service):
    """Calls `malloc_trim(0)` every `PW_MALLOC_TRIM_SECONDS` on a thread of its own."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.trim_thread = TrimThread(
            settings.malloc_trim_seconds, mmap_threshold_kib=settings.malloc_mmap_threshold_kib
        )
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.trim_thread.start()

    async def on_stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.trim_thread.stop)


heap_trimmer = HeapTrimmer(settings)
app.service(heap_trimmer)  # type: ignore[arg-type]  # Faust accepts instances too
