"""streams/heap_trim.py: the worker hands freed heap memory back to glibc's system every
PW_MALLOC_TRIM_SECONDS, on a thread of its own, and not at all when that is 0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pipeline.config import Settings
from streams import heap_trim


def test_glibc_has_malloc_trim() -> None:
    trim = heap_trim.malloc_trim()
    assert trim is not None, "this machine's C library is glibc: malloc_trim must be found"
    assert trim(0) in (0, 1)


def run(seconds: float, monkeypatch: Any) -> tuple[list[int], heap_trim.HeapTrimmer]:
    calls: list[int] = []
    monkeypatch.setattr(heap_trim, "malloc_trim", lambda: calls.append)
    trimmer = heap_trim.HeapTrimmer(Settings.from_env({"PW_MALLOC_TRIM_SECONDS": str(seconds)}))

    async def main() -> None:
        await trimmer.on_start()
        deadline = time.monotonic() + 5
        while seconds and len(calls) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await trimmer.on_stop()

    asyncio.run(main())
    return calls, trimmer


def test_trims_every_interval_until_stopped(monkeypatch: Any) -> None:
    calls, trimmer = run(0.01, monkeypatch)
    assert len(calls) >= 3 and set(calls) == {0}
    assert trimmer._thread is not None and not trimmer._thread.is_alive()
    stopped = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped


def test_zero_seconds_never_trims(monkeypatch: Any) -> None:
    calls, trimmer = run(0, monkeypatch)
    assert calls == [] and trimmer._thread is None
