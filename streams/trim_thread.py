"""Freed heap memory back to the system: glibc's `malloc_trim(0)` every `PW_MALLOC_TRIM_SECONDS`,
on a thread of its own. Every long-running process starts one: the worker (as a Faust service,
streams/heap_trim.py), `partnerwatch loader` and `partnerwatch provider-stage`.

glibc's allocator keeps what a process frees for its next allocations, and gives back only the
top of each arena: the threads that allocate and free record batches by the megabyte (ingest,
the warehouse loader, the provider stage, the embedded engine's) left freed pages resident in
the middle of the arenas, about 100 MiB of the worker's RSS (docs/performance.md, "Where the
worker's memory goes"). `malloc_trim(0)` returns every free page of every arena to the system
(`madvise`); ctypes lets the GIL go during the call, so nothing else waits for it, and it takes a
few milliseconds. Where the C library has no `malloc_trim` (musl, macOS) nothing runs. Each
call counts in `pw_heap_trims_total`.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

import structlog

from sinks.metrics import HEAP_TRIMS

log = structlog.get_logger(__name__)

#: bytes per page, for /proc/self/statm
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mib() -> float | None:
    """This process's resident memory in MiB (/proc/self/statm), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * _PAGE / 1048576


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


class TrimThread:
    """Calls `malloc_trim(0)` every `seconds` until stopped; does nothing for 0 seconds or
    without glibc."""

    def __init__(self, seconds: float, *, trim: Callable[[int], int] | None = None) -> None:
        self.seconds = seconds
        self.trims = 0
        self._trim = trim
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> TrimThread:
        trim = self._trim or malloc_trim()
        if not self.seconds or trim is None:
            log.info("heap_trim.off", seconds=self.seconds, malloc_trim=trim is not None)
            return self
        self.thread = threading.Thread(
            target=self._run, args=(trim,), name="heap-trim", daemon=True
        )
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self, trim: Callable[[int], int]) -> None:
        while not self._stop.wait(self.seconds):
            trim(0)
            self.trims += 1
            HEAP_TRIMS.inc()
