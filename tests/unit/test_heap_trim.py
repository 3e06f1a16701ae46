"""streams/trim_thread.py and streams/heap_trim.py: a process hands freed heap memory back to
glibc's system every PW_MALLOC_TRIM_SECONDS, on a thread of its own, and not at all when that
is 0; the worker does it as a Faust service. (`partnerwatch loader`: test_loader_process.py;
`partnerwatch provider-stage`: test_provider_stage_process.py.)"""

from __future__ import annotations

import asyncio
import time

from pipeline.config import Settings
from sinks.metrics import HEAP_TRIMS
from streams import heap_trim, trim_thread


def test_glibc_has_malloc_trim() -> None:
    trim = trim_thread.malloc_trim()
    assert trim is not None, "this machine's C library is glibc: malloc_trim must be found"
    assert trim(0) in (0, 1)


def wait_calls(calls: list[int], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(calls) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_trims_every_interval_until_stopped() -> None:
    calls: list[int] = []
    before = HEAP_TRIMS._value.get()
    thread = trim_thread.TrimThread(0.01, trim=lambda pad: calls.append(pad) or 1).start()
    wait_calls(calls, 3)
    thread.stop()
    assert len(calls) >= 3 and set(calls) == {0}
    assert thread.trims == len(calls) and HEAP_TRIMS._value.get() - before == len(calls)
    assert thread.thread is not None and not thread.thread.is_alive()
    stopped = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped


def test_zero_seconds_never_trims() -> None:
    calls: list[int] = []
    thread = trim_thread.TrimThread(0, trim=lambda pad: calls.append(pad) or 1).start()
    time.sleep(0.05)
    thread.stop()
    assert calls == [] and thread.thread is None


def test_the_worker_service_starts_and_stops_the_thread() -> None:
    trimmer = heap_trim.HeapTrimmer(Settings.from_env({"PW_MALLOC_TRIM_SECONDS": "0.01"}))
    calls: list[int] = []
    trimmer.trim_thread._trim = lambda pad: calls.append(pad) or 1

    async def main() -> None:
        await trimmer.on_start()
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await trimmer.on_stop()

    asyncio.run(main())
    assert len(calls) >= 3
    assert trimmer.trim_thread.thread is not None and not trimmer.trim_thread.thread.is_alive()
