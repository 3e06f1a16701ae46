"""Detection state survives restarts: after each one it equals the state rebuilt from the ledger.

Issue 15, finding 20: a restart could come back with empty tables (Faust's recovery saw a
highwater of -1 on every changelog partition) and write the emptied state back. Four restarts
here (SIGTERM and SIGKILL, seeded), each recovering from a ledger snapshot and the ledger after
it, and every event sequenced exactly once; the detection states are written at checkpoints
(every second), so a restart after SIGKILL folds the ledger after the last one into them again:
the second test makes that certain.
tests/reliability/test_restarts.py runs twenty (with the default settings, which snapshot every
minute).
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

import orjson
import pytest

from detectors.provider_wide import rules as provider_wide_rules
from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.restart_storm import folded_since, ready_since, report, storm
from tests.integration.state_check import StateReader, caught_up, committed, differences

pytestmark = pytest.mark.integration

PROVIDER_WIDE = frozenset(m.name for m in pkgutil.iter_modules(provider_wide_rules.__path__))


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


def test_a_restart_after_sigkill_folds_the_ledger_after_the_last_checkpoint(
    kafka_broker: str, tmp_path: Path
) -> None:
    """States written only with each partition's first transaction and at a handover (the
    checkpoint interval far off, no ledger snapshots): killed with SIGKILL, the worker leaves
    changelogs behind the ledger. The next load folds the entries after the checkpoint into the
    states (no alert published again), and its handover writes them: the changelogs then equal
    the ledger's fold, and a load after that folds nothing."""
    ns = Namespace(
        tmp_path, extra_env={"PW_STATE_CHECKPOINT_SECONDS": "3600", "PW_SNAPSHOT_SECONDS": "0"}
    )
    stream = [e for e, _ in generate(2_000, seed=2016, accounts=12, attack_rate=0.01)]

    def account_alerts() -> int:
        """Alert versions of the ingest service (the provider stage folds its own tail again
        after a SIGKILL and publishes what it raises there again, by design)."""
        return sum(
            1
            for r in committed(ns, ns.settings.alerts_topic)
            if orjson.loads(r.value)["detector"] not in PROVIDER_WIDE
        )

    partitions = ns.settings.topic_partitions
    worker = Worker(ns).start()
    try:
        ns.send(stream[:200])
        wait_for(lambda: caught_up(ns), 240, "the first 200 events sequenced")
        ns.send(stream[200:])
        wait_for(lambda: caught_up(ns), 240, "2,000 events sequenced")
        with StateReader(ns) as reader:
            assert reader.differences(), "the changelogs hold every state: no checkpoint skipped"
        published = account_alerts()
        assert published
        worker.kill()
        logged = worker.log_path.stat().st_size
        worker = Worker(ns).start()
        wait_for(
            lambda: ready_since(worker.log_path, logged) >= partitions, 120, "the partitions loaded"
        )
        assert folded_since(worker.log_path, logged) > 0
        worker.stop()  # the handover writes the folded states
        assert differences(ns) == []
        assert account_alerts() == published
        logged = worker.log_path.stat().st_size
        worker = Worker(ns).start()
        wait_for(
            lambda: ready_since(worker.log_path, logged) >= partitions, 120, "the partitions loaded"
        )
        assert folded_since(worker.log_path, logged) == 0
    finally:
        worker.stop()
