"""streams/trim_thread.py and streams/heap_trim.py: a process hands freed heap memory back to
glibc's system every PW_MALLOC_TRIM_SECONDS, on a thread of its own, and not at all when that
is 0; the worker does it as a Faust service. Starting the thread fixes glibc's mmap threshold at
PW_MALLOC_MMAP_THRESHOLD_KIB, unless that is 0 or the environment sets it. (`partnerwatch
loader`: tests/integration/test_loader_process.py; `partnerwatch provider-stage`:
tests/integration/test_provider_stage_process.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from pipeline.config import REPO_ROOT, Settings
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


#: Run in a fresh interpreter (below): in a process with a long history, glibc serves a large
#: block from a free chunk of an arena whatever the threshold, so only a young heap shows which
#: blocks get mappings of their own. Prints, for blocks of 4 MiB (then freed), 300 KiB and 64 KiB,
#: how many mappings each malloc added (glibc's mallinfo2).
_MAPPED_BLOCKS = """
import ctypes, sys
from streams import trim_thread

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert trim_thread.fix_mmap_threshold(256, environ={}) is True  # the real glibc mallopt

def mapped(size):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    try:
        return libc.mallinfo2().hblks - before
    finally:
        libc.free(block)

print(mapped(4 * 1024 * 1024), mapped(300 * 1024), mapped(64 * 1024))
"""


@pytest.mark.parametrize(("threshold", "mapped"), [("fixed", "1 1 0"), ("glibc's", "1 0 0")])
def test_a_fixed_threshold_still_maps_a_block_above_it_after_a_larger_one_was_freed(
    threshold: str, mapped: str
) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    out = subprocess.run(
        [sys.executable, "-c", _MAPPED_BLOCKS, threshold],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO_ROOT,
        check=True,
    ).stdout
    # glibc's own threshold rose to 4 MiB when that block was freed: 300 KiB came from an arena.
    assert out.split() == mapped.split()


def recorder(answer: int = 1) -> tuple[list[tuple[int, int]], Any]:
    calls: list[tuple[int, int]] = []

    def opt(param: int, value: int) -> int:
        calls.append((param, value))
        return answer

    return calls, opt


def test_fix_mmap_threshold_asks_glibc_in_bytes() -> None:
    calls, opt = recorder()
    assert trim_thread.fix_mmap_threshold(512, environ={}, opt=opt) is True
    assert calls == [(trim_thread.M_MMAP_THRESHOLD, 512 * 1024)]


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_MMAP_THRESHOLD_": "1048576"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"},
    ],
)
def test_the_operators_own_threshold_stands(environ: dict[str, str]) -> None:
    calls, opt = recorder()
    assert trim_thread.fix_mmap_threshold(256, environ=environ, opt=opt) is False
    assert calls == []


def test_zero_leaves_glibc_its_own_threshold_and_a_refusal_is_reported() -> None:
    calls, opt = recorder()
    assert trim_thread.fix_mmap_threshold(0, environ={}, opt=opt) is False
    assert calls == []
    calls, refusing = recorder(answer=0)
    assert trim_thread.fix_mmap_threshold(256, environ={}, opt=refusing) is False
    assert len(calls) == 1


def test_starting_the_thread_fixes_the_threshold_even_without_trims(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []

    def fix(kib: int) -> bool:
        asked.append(kib)
        return True

    monkeypatch.setattr(trim_thread, "fix_mmap_threshold", fix)
    thread = trim_thread.TrimThread(0, mmap_threshold_kib=384, trim=lambda pad: 1).start()
    thread.stop()
    assert asked == [384] and thread.thread is None


def test_the_worker_service_takes_the_setting() -> None:
    default = heap_trim.HeapTrimmer(Settings.from_env({}))
    assert default.trim_thread.mmap_threshold_kib == 256
    off = heap_trim.HeapTrimmer(Settings.from_env({"PW_MALLOC_MMAP_THRESHOLD_KIB": "0"}))
    assert off.trim_thread.mmap_threshold_kib == 0


@pytest.mark.parametrize("value", ["-1", "32769", "256;rm", "1e9"])
def test_a_threshold_out_of_range_is_refused_at_start_up(value: str) -> None:
    with pytest.raises(ValueError, match=r"^PW_MALLOC_MMAP_THRESHOLD_KIB="):
        Settings.from_env({"PW_MALLOC_MMAP_THRESHOLD_KIB": value})
