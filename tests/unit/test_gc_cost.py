"""bench/gc_cost.py: its probe counts and times collections in the process that loads it, and
forces the thresholds it is given; the window's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.gc_cost import PROBE, read_probe, window

SCRIPT = """
import gc, os
print(gc.get_threshold())
gc.set_threshold(1, 2, 3)
print(gc.get_threshold())
for _ in range(3):
    gc.collect(1)
gc.collect(2)
print(os.getpid())
"""


def _run(tmp_path: Path, threshold: str = "") -> tuple[str, dict[str, object]]:
    (tmp_path / "sitecustomize.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PW_GC_PROBE_DIR": str(tmp_path)}
    env.pop("PW_GC_PROBE_THRESHOLD", None)
    if threshold:
        env["PW_GC_PROBE_THRESHOLD"] = threshold
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    # the probe writes its counters at exit too: no waiting for its once-a-second write
    return out[0] + " " + out[1], read_probe(tmp_path, int(out[2]))


def test_the_probe_counts_each_generations_collections(tmp_path: Path) -> None:
    shown, doc = _run(tmp_path)
    assert shown == f"{(700, 10, 10)} (1, 2, 3)"  # no threshold given: the process's own stand
    n = doc["n"]
    assert isinstance(n, list)
    assert n[1] >= 3 and n[2] >= 1
    seconds = doc["seconds"]
    assert isinstance(seconds, list) and all(s >= 0 for s in seconds) and seconds[2] > 0


def test_the_probe_forces_the_thresholds_it_is_given(tmp_path: Path) -> None:
    shown, doc = _run(tmp_path, "7,8,9")
    # Python's own until the process sets its thresholds, then the ones given
    assert shown == f"{(700, 10, 10)} (7, 8, 9)"
    assert doc["threshold"] == [7, 8, 9]


def test_the_window_is_the_difference_per_event() -> None:
    """Counts and time between the two readings; the longest pause among those in the window
    only (one before it, however long, does not count)."""
    pauses = [(99.0, 1, 0.5), (100.5, 0, 0.02), (101.0, 1, 0.07), (101.5, 0, 0.01)]
    before = {"n": [10, 1, 0], "seconds": [0.5, 0.1, 0.0], "pauses": pauses[:1], "at": 100.0}
    after = {"n": [30, 3, 0], "seconds": [1.5, 0.3, 0.0], "pauses": pauses, "at": 102.0}
    rows = window(before, after, 100_000)
    assert [r["collections"] for r in rows] == [20, 2, 0]
    assert [round(r["us_per_event"], 6) for r in rows] == [10.0, 2.0, 0.0]
    assert [round(r["longest_ms"], 6) for r in rows] == [20.0, 70.0, 0.0]
    json.dumps(rows)
