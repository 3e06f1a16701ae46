"""bench/cpu_budget.py's readings: per-thread CPU from /proc, py-spy's thread names, the medians."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from bench.cpu_budget import (
    _DUMP_THREAD,
    machine_times,
    median_budget,
    per_event,
    thread_times,
    thread_waits,
)


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_thread_times_charges_the_thread_that_worked() -> None:
    done = threading.Event()
    tid: list[int] = []

    def work() -> None:
        tid.append(threading.get_native_id())
        _spin(0.3)
        done.wait(10)

    thread = threading.Thread(target=work, name="spinner")
    before = thread_times(os.getpid())
    thread.start()
    try:
        while not tid:
            time.sleep(0.01)
        time.sleep(0.5)
        after = thread_times(os.getpid())
    finally:
        done.set()
        thread.join()
    assert tid[0] not in before
    name, cpu = after[tid[0]]
    assert name  # the OS's name of the thread
    assert cpu >= 0.2  # its own CPU, at clock-tick resolution
    main = threading.get_native_id()
    assert after[main][1] - before[main][1] < 0.2  # the main thread slept meanwhile


def test_py_spy_thread_lines_are_read() -> None:
    dump = (
        "Process 22203: python -m partnerwatch worker\n"
        "Python v3.11.7\n\n"
        'Thread 22203 (idle): "MainThread"\n'
        "    Worker.execute_from_commandline (mode/worker.py:264)\n"
        'Thread 22236 (active): "warehouse-loader"\n'
        'Thread 22250 (active+gil): "uvloop_0"\n'
    )
    assert dict((int(t), n) for t, n in _DUMP_THREAD.findall(dump)) == {
        22203: "MainThread",
        22236: "warehouse-loader",
        22250: "uvloop_0",
    }


def test_median_budget_per_process_and_thread() -> None:
    runs = [
        {"processes": {"worker": {"MainThread": 60.0, "ThreadPool": 12.0}}},
        {"processes": {"worker": {"MainThread": 70.0}, "provider stage process": {"x": 3.0}}},
        {"processes": {"worker": {"MainThread": 65.0, "ThreadPool": 10.0}}},
    ]
    assert median_budget(runs) == {
        "worker": {"MainThread": 65.0, "ThreadPool": 10.0},
        "provider stage process": {"x": 0.0},
    }


def test_thread_waits_is_time_ready_to_run_without_a_core() -> None:
    # Three busy processes on one core: each runs about a third of the time and waits the rest,
    # so what a waiting reading gives must be about twice its CPU (the CPU field would equal it).
    # Each spinner says when it spins, and the readings are differences over a window in which
    # all three do: on a loaded machine the last interpreter can take most of a second to start,
    # and the first ran alone until then (CI on 25efc8b: 0.64 s of CPU and 0.74 s waited).
    spin = (
        "import sys, time\nprint(flush=True)\nend = time.time() + 30\n"
        "while time.time() < end: pass\n"
    )
    cpu = sorted(os.sched_getaffinity(0))[0]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", spin],
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()
        before = [(thread_times(p.pid), thread_waits(p.pid)) for p in procs]
        time.sleep(0.9)
        after = [(thread_times(p.pid), thread_waits(p.pid)) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    for (cpu0, waits0), (cpu1, waits1) in zip(before, after, strict=True):
        (tid,) = waits1  # one thread each
        ran = cpu1[tid][1] - cpu0[tid][1]
        waited = waits1[tid] - waits0[tid]
        assert ran > 0.05
        assert waited > 1.3 * ran


def test_per_event_groups_threads_by_name() -> None:
    after = {1: 2.0, 2: 1.5, 3: 0.01, 4: 0.5}
    before = {1: 1.0, 2: 1.0, 3: 0.0}  # 4 started between the readings
    names = {1: "ThreadPool", 2: "ThreadPool", 3: "tiny", 4: "MainThread"}
    # 1,000,000 events: 1 s is 1 µs per event; below 0.05 µs is left out
    assert per_event(after, before, names, 1_000_000) == {"ThreadPool": 1.5, "MainThread": 0.5}
    assert per_event(after, before, names, 1_000_000_000) == {}  # all under 0.05 µs


def test_machine_times_idle_within_all() -> None:
    idle, total = machine_times()
    assert 0 <= idle <= total
