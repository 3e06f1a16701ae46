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

The same processes fix glibc's mmap threshold when the thread starts (`PW_MALLOC_MMAP_THRESHOLD_KIB`,
256 by default; `fix_mmap_threshold`). glibc serves a block of 128 KiB or more with a mapping of
its own, but raises that threshold to the size of each such block freed, up to 32 MiB: after the
first record batches and fetch buffers of a few MiB come and go, blocks of that size are carved
from the arenas, between smaller blocks that live longer, and what they leave when freed is
trimmed only page by page, if ever. A fixed threshold keeps them out of the arenas (docs/performance.md,
"A fixed mmap threshold").
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Mapping

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


def _libc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """The C library's function `name` (returning an int), or None where it has none."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    function = getattr(libc, name, None)
    if function is not None:
        function.argtypes = list(argtypes)
        function.restype = ctypes.c_int
    return function


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    return _libc("malloc_trim", ctypes.c_size_t)


#: glibc's `mallopt` parameter for the mmap threshold (`M_MMAP_THRESHOLD` in malloc.h)
M_MMAP_THRESHOLD = -3


def mallopt() -> Callable[[int, int], int] | None:
    """glibc's `mallopt`, or None where the C library has none."""
    return _libc("mallopt", ctypes.c_int, ctypes.c_int)


def fix_mmap_threshold(
    kib: int,
    *,
    environ: Mapping[str, str] = os.environ,
    opt: Callable[[int, int], int] | None = None,
) -> bool:
    """Have glibc serve every allocation of `kib` KiB or more with a mapping of its own, at a
    threshold that no longer moves (`mallopt(M_MMAP_THRESHOLD)`); whether it was set. Nothing is
    set for 0, without glibc's `mallopt`, or where the operator set the threshold for the process
    (MALLOC_MMAP_THRESHOLD_, or mmap_threshold in GLIBC_TUNABLES): theirs stands."""
    if kib <= 0:
        return False
    if "MALLOC_MMAP_THRESHOLD_" in environ or "mmap_threshold" in environ.get("GLIBC_TUNABLES", ""):
        log.info("heap.mmap_threshold_from_environment")
        return False
    opt = opt or mallopt()
    if opt is None:
        log.info("heap.mmap_threshold_unsupported")
        return False
    if opt(M_MMAP_THRESHOLD, kib * 1024) != 1:
        log.warning("heap.mmap_threshold_refused", kib=kib)
        return False
    return True


class TrimThread:
    """Calls `malloc_trim(0)` every `seconds` until stopped; does nothing for 0 seconds or
    without glibc. Starting it first fixes the mmap threshold at `mmap_threshold_kib` (0: not)."""

    def __init__(
        self,
        seconds: float,
        *,
        mmap_threshold_kib: int = 0,
        trim: Callable[[int], int] | None = None,
    ) -> None:
        self.seconds = seconds
        self.mmap_threshold_kib = mmap_threshold_kib
        self.trims = 0
        self._trim = trim
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> TrimThread:
        fix_mmap_threshold(self.mmap_threshold_kib)
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
