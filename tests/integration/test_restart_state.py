"""Detection state survives restarts: after each one it equals the state rebuilt from the ledger.

Issue 15, finding 20: a restart could come back with empty tables (Faust's recovery saw a
highwater of -1 on every changelog partition) and write the emptied state back. Four restarts
here (SIGTERM and SIGKILL, seeded), each recovering from a ledger snapshot and the ledger after
it, and every event sequenced exactly once; the detection states are written at checkpoints
(every second), so a restart after SIGKILL folds the ledger after the last one into them again.
tests/reliability/test_restarts.py runs twenty (with the default settings, which snapshot every
minute).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.restart_storm import report, storm

pytestmark = pytest.mark.integration


def test_four_restarts_keep_every_accounts_detection_state(
    kafka_broker: str, tmp_path: Path
) -> None:
    # Snapshots every second and ids held exactly for two seconds: the restarts recover from a
    # snapshot and the ledger after it, with the dedup window partly in its filters.
    _, rounds = storm(
        tmp_path,
        restarts=4,
        seed=2015,
        extra_env={"PW_SNAPSHOT_SECONDS": "1", "PW_DEDUP_EXACT_SECONDS": "2"},
    )
    assert len(rounds) == 4
    assert {r.signal for r in rounds} == {"SIGTERM", "SIGKILL"}
    assert not any(r.differences for r in rounds), report(rounds)
    # killed between state checkpoints, the worker folded the ledger after the last one again
    assert sum(r.folded for r in rounds if r.signal == "SIGKILL") > 0, [
        (r.signal, r.folded) for r in rounds
    ]
