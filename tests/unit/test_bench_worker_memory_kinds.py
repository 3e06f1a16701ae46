"""bench.worker_memory's breakdown tells thread stacks from other 8 MiB mappings.

Both are 8 MiB anonymous mappings after a 4 KiB guard page (numpy's large buffers, such as the
dedup window's day filters, come out in that shape too): only a mapping that holds a thread's
stack pointer is counted as a stack.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench.worker_memory import classify, stack_pointers

MIB = 1024 * 1024


def _mapping(start: int, size: int, anon_kb: int) -> str:
    return (
        f"{start:x}-{start + size:x} rw-p 00000000 00:00 0 \n"
        f"Rss:            {anon_kb} kB\nAnonymous:      {anon_kb} kB\n"
    )


def _guarded(start: int) -> str:
    """A guard page, then an 8 MiB mapping 8 MiB resident."""
    guard = f"{start:x}-{start + 4096:x} ---p 00000000 00:00 0 \nRss:            0 kB\nAnonymous:      0 kB\n"
    return guard + _mapping(start + 4096, 8 * MIB, 8 * 1024)


def test_an_eight_mib_mapping_is_a_stack_only_with_a_thread_in_it() -> None:
    first, second = 0x7F0000000000, 0x7F0010000000
    text = _guarded(first) + _guarded(second)
    kinds = classify(text, [first + 4096 + 5 * MIB])
    assert kinds["stacks"] == 8.0
    assert kinds["8 MiB, no thread"] == 8.0
    kinds = classify(text, [])
    assert kinds["stacks"] == 0.0
    assert kinds["8 MiB, no thread"] == 16.0


def test_a_waiting_threads_stack_pointer_is_inside_one_of_its_mappings() -> None:
    done = threading.Event()
    thread = threading.Thread(target=done.wait, name="waiting")
    thread.start()
    try:
        assert thread.native_id is not None
        syscall = Path(f"/proc/self/task/{thread.native_id}/syscall")
        deadline = time.monotonic() + 10
        fields = syscall.read_text().split()
        while len(fields) < 3:  # "running": not blocked in its wait yet
            assert time.monotonic() < deadline, "the thread never blocked"
            time.sleep(0.01)
            fields = syscall.read_text().split()
        sp = int(fields[-2], 16)
        assert sp in stack_pointers(os.getpid())
        spans = []
        for line in Path("/proc/self/maps").read_text().splitlines():
            low, high = (int(x, 16) for x in line.split()[0].split("-"))
            spans.append((low, high))
        assert any(low <= sp < high for low, high in spans)
    finally:
        done.set()
        thread.join()
