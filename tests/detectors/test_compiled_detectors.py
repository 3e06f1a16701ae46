"""The optional mypyc build of the detection path (tools/compile_detectors.py, `make compile`)
finds what the pure-Python modules find: the same alerts, in the same order, and the same
detection state, on simulator streams with every attack kind (seeds 7 and 23); in the ingest
service's detection and in the provider stage's (its rules, Sigma rules, days across accounts,
and the checkpoints it writes); and the ingest service's per-record work besides detection
(validation, masking, dedup and sequencing), on the same simulated stream with bank and
personal data, repeats and hostile messages: the same verdict on every message (a reject's
reason and detail), the same ledger records byte for byte, the same dedup window.

Skipped when the build is not present (the default: CI and `pip install -e .` run pure Python).
The compiled side runs in this process; the pure-Python side in a subprocess that imports the
`.py` files (`pure_python`), since one process cannot hold both under the same names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson
import pytest

import detectors.run  # noqa: F401 (loads the build's modules, compiled where built)
from pipeline.config import REPO_ROOT
from tests.detectors.compiled_parity import ingest_fold, run, variant
from tools.compile_detectors import modules

LOADED = variant()
pytestmark = pytest.mark.skipif(
    not LOADED["compiled"],
    reason="the optional mypyc build of the detectors is not present (make compile):"
    " nothing compiled to compare with the pure-Python detectors",
)

COUNT = 20_000


def pure(seed: int, *mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.detectors.compiled_parity",
            "--pure",
            *mode,
            str(seed),
            str(COUNT),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        check=True,
        timeout=600,
    )
    return orjson.loads(done.stdout)


def test_every_module_of_the_build_is_compiled() -> None:
    """A stale or partial build (a module added since `make compile`) would compare less."""
    assert not LOADED["python"], f"rebuild (make compile): not compiled: {LOADED['python']}"
    assert set(LOADED["compiled"]) <= set(modules())


@pytest.mark.parametrize("seed", [7, 23])
def test_compiled_detectors_find_what_pure_python_finds(seed: int) -> None:
    compiled = run(seed, COUNT)
    python = pure(seed)
    assert compiled["variant"]["compiled"] and not compiled["variant"]["python"]
    assert python["variant"]["python"] and not python["variant"]["compiled"]
    # the comparison says something: many alerts, and the behaviour model's path ran
    assert len(set(python["alert_ids"])) >= 100 and "behaviour_anomaly" in python["detectors"]
    assert compiled["detectors"] == python["detectors"]
    assert compiled["alert_ids"] == python["alert_ids"]
    assert compiled["alerts_digest"] == python["alerts_digest"]
    assert compiled["closed"] == python["closed"]
    assert compiled["state_digest"] == python["state_digest"]
    compiled_wide, python_wide = compiled["provider"], python["provider"]
    # the comparison says something here too: many alerts, of the rules and the Sigma examples
    assert len(set(python_wide["alert_ids"])) >= 500 and len(python_wide["alerts"]) >= 10
    assert compiled_wide["alert_ids"] == python_wide["alert_ids"]
    assert compiled_wide["alerts"] == python_wide["alerts"]
    assert compiled_wide["checkpoints"] == python_wide["checkpoints"]
    assert compiled_wide["states"] == python_wide["states"]


@pytest.mark.parametrize("seed", [7, 23])
def test_compiled_ingest_path_gives_the_bytes_pure_python_gives(seed: int) -> None:
    python = pure(seed, "--ingest")
    for mode in ("exact", "bounded"):
        compiled, expected = ingest_fold(seed, COUNT, bounded=mode == "bounded"), python[mode]
        assert compiled["variant"]["compiled"] and not compiled["variant"]["python"]
        assert expected["variant"]["python"] and not expected["variant"]["compiled"]
        assert "pipeline.action_decoder" in compiled["variant"]["compiled"]
        # the comparison says something: every reject reason but one met, many messages
        # masked, repeats dropped (and in bounded mode found by the filters and confirmed), and
        # the typed decoder's own path taken for the simulator's messages (not parse_action)
        reasons = {reason for _, reason, _ in expected["verdicts"]}
        assert len(reasons) >= 10 and {"wrong_key", "too_large", "bad_encoding"} <= reasons
        assert expected["masked"] >= 200 and expected["entries"] >= COUNT
        assert sum(b[2] for b in expected["batches"]) >= 200
        assert expected["fast_path"] >= 0.95 * COUNT
        if mode == "bounded":
            assert sum(b[4] for b in expected["batches"]) >= 100 and expected["filtered"]
        assert compiled["fast_path"] == expected["fast_path"]
        assert compiled["verdicts"] == expected["verdicts"]
        assert compiled["batches"] == expected["batches"]
        assert compiled["ledger_digest"] == expected["ledger_digest"]
        assert compiled["masked"] == expected["masked"]
        assert compiled["alerts_digest"] == expected["alerts_digest"]
        assert compiled["heads"] == expected["heads"]
        assert (compiled["seen"], compiled["filtered"]) == (expected["seen"], expected["filtered"])
        assert compiled["filters"] == expected["filters"]
        assert compiled == expected | {"variant": compiled["variant"]}
