"""Restart a loaded worker again and again and check its detection state after every restart.

Each round: events are being sent; at a seeded random moment the worker gets SIGTERM or SIGKILL
(seeded); it is started again 1-10 s (seeded) after it exited; once it has caught up with
everything sent, every account's state in its tables (read from the changelogs, as the next
recovery sees them) is compared with the state rebuilt from the ledger from scratch. Each round
also notes how many ledger entries the restarted worker's loads folded into the states (the
entries after their last state checkpoint: `ingest.state_loaded ... folded=N` in its log).
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.state_check import StateReader, caught_up
from tests.reliability.harness import Sender


@dataclass
class Round:
    signal: str
    killed_after: float
    down_for: float
    differences: list[str] = field(default_factory=list)
    #: ledger entries the restarted worker's partition loads folded into the states
    folded: int = 0


def _lines(log: Path, offset: int, event: str) -> list[str]:
    """The worker's log lines of `event` after `offset`."""
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if event in line]


def _loads(log: Path, offset: int) -> list[str]:
    """The `ingest.state_loaded` lines after `offset` (one per partition load)."""
    return _lines(log, offset, "ingest.state_loaded")


def ready_since(log: Path, offset: int) -> int:
    """Partitions taken up after `offset` (`ingest.partition_ready`: loaded, and at their
    position; a close from then on writes their folded states)."""
    return len(_lines(log, offset, "ingest.partition_ready"))


def folded_since(log: Path, offset: int) -> int:
    """The `folded=` counts of the partition loads the worker logged after `offset`."""
    return sum(
        int(m.group(1)) for line in _loads(log, offset) if (m := re.search(r"\bfolded=(\d+)", line))
    )


def storm(
    root: Path,
    restarts: int,
    seed: int,
    per_round: int = 1_000,
    extra_env: dict[str, str] | None = None,
) -> tuple[Namespace, list[Round]]:
    rng = random.Random(seed)
    # 12 accounts, grants first: a wiped table loses grants, which every later event depends on.
    stream = [
        e
        for e, _ in generate(2_000 + restarts * per_round, seed=seed, accounts=12, attack_rate=0.01)
    ]
    ns = Namespace(root, extra_env=dict(extra_env or {}))
    rounds: list[Round] = []
    worker = Worker(ns).start()
    reader: StateReader | None = None
    try:
        ns.send(stream[:2_000])
        wait_for(lambda: caught_up(ns), 240, "the first 2,000 events handled")
        reader = StateReader(ns)  # reads the growing topics incrementally, folds from scratch
        for n in range(restarts):
            chunk = stream[2_000 + n * per_round : 2_000 + (n + 1) * per_round]
            sender = Sender(ns, chunk, chunk=100, pause=0.1)
            sender.start()
            this = Round(
                signal=rng.choice(("SIGTERM", "SIGKILL")),
                killed_after=rng.uniform(0.2, 3.0),
                down_for=rng.uniform(1.0, 10.0),
            )
            time.sleep(
                this.killed_after
            )  # the seeded moment of the fault, while events are in flight
            if this.signal == "SIGKILL":
                worker.kill()
            else:
                worker.stop()
            time.sleep(this.down_for)  # the seeded time the worker stays down
            logged = worker.log_path.stat().st_size if worker.log_path.exists() else 0
            worker = Worker(ns).start()
            sender.join()
            assert sender.error is None, sender.error
            wait_for(lambda: caught_up(ns), 300, f"round {n}: every event handled")
            this.differences = reader.settled_differences()
            this.folded = folded_since(worker.log_path, logged)
            # Exactly once: every event sent so far has one ledger entry, none has two.
            sent = 2_000 + (n + 1) * per_round
            ids = [(e["account_id"], e["event_id"]) for e in reader.ledger_entries()]
            if len(ids) != sent or len(set(ids)) != sent:
                this.differences.append(
                    f"ledger: {len(ids)} entries, {len(set(ids))} distinct, {sent} events sent"
                )
            rounds.append(this)
            print(
                f"restart {n + 1}/{restarts}: {this.signal} after {this.killed_after:.1f}s, down {this.down_for:.1f}s:"
                f" {len(this.differences)} differing keys, {this.folded} entries folded at load"
            )
    finally:
        worker.stop()
        if reader is not None:
            reader.close()
    return ns, rounds


def report(rounds: list[Round]) -> str:
    return "\n".join(
        f"restart {i + 1} ({r.signal}, down {r.down_for:.1f}s): " + "; ".join(r.differences[:5])
        for i, r in enumerate(rounds)
        if r.differences
    )
