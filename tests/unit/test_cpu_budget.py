"""bench/cpu_budget.py's readings: per-thread CPU from /proc, py-spy's thread names, the medians."""

from __future__ import annotations

import os
import threading
import time

from bench.cpu_budget import _DUMP_THREAD, median_budget, thread_times


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
