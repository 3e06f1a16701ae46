"""Twenty restarts of a loaded worker (SIGTERM and SIGKILL at seeded random points, back 1-10 s
later): after every one, every account's detection state equals the state rebuilt from the ledger.

About 5 minutes, most of it the seeded waits: `slow`, so `make test` runs the same storm with 4
restarts (tests/integration/test_restart_state.py) and `make reliability` runs this one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.restart_storm import report, storm

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_twenty_restarts_keep_every_accounts_detection_state(
    kafka_broker: str, tmp_path: Path
) -> None:
    _, rounds = storm(tmp_path, restarts=20, seed=1520)
    assert len(rounds) == 20
    assert not any(r.differences for r in rounds), report(rounds)
