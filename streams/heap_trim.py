"""Freed heap memory back to the system: glibc's `malloc_trim(0)` every `PW_MALLOC_TRIM_SECONDS`.

glibc's allocator keeps what a process frees for its next allocations, and gives back only the
top of each arena: the worker's threads (ingest, the warehouse loader, the provider stage, the
embedded engine's) allocate and free record batches by the megabyte, and the freed pages in the
middle of the arenas stayed resident, about 100 MiB of the worker's RSS
(docs/performance.md, "Where the worker's memory goes"). `malloc_trim(0)` returns every free
page of every arena to the system (`madvise`); it runs on a thread of its own (ctypes lets the
GIL go during the call), so the event loop does not wait for it, and takes a few milliseconds.
Where the C library has no `malloc_trim` (musl, macOS) nothing runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Callable
from typing import Any

import structlog
from mode import Service

from pipeline.config import Settings
from streams.app import app, settings

log = structlog.get_logger(__name__)


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer(Service):
    """Calls `malloc_trim(0)` every `PW_MALLOC_TRIM_SECONDS` on a thread of its own."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.seconds = settings.malloc_trim_seconds
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        trim = malloc_trim()
        if not self.seconds or trim is None:
            log.info("heap_trim.off", seconds=self.seconds, malloc_trim=trim is not None)
            return
        self._thread = threading.Thread(
            target=self._run, args=(trim,), name="heap-trim", daemon=True
        )
        self._thread.start()

    async def on_stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)

    def _run(self, trim: Callable[[int], int]) -> None:
        while not self._stop.wait(self.seconds):
            trim(0)
            self.trims += 1


heap_trimmer = HeapTrimmer(settings)
app.service(heap_trimmer)  # type: ignore[arg-type]  # Faust accepts instances too
