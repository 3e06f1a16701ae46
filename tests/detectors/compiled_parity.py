"""What the parity test of the optional mypyc build (test_compiled_detectors.py) compares: one
simulator stream through detection, as the ingest service folds it, summed up.

`run(seed, count)` feeds `pipeline.simulation.traffic.generate` (every attack kind) through
`detectors.run.apply_event` account by account, with the open alerts kept like the worker's
table and a deterministic stand-in behaviour model, so the behaviour features and
`behaviour_anomaly` run too. It returns the alert ids in the order they were published, a digest
of every alert version, and a digest of the final detection state of every account.

    python -m tests.detectors.compiled_parity [--pure] SEED COUNT

prints that as JSON; `--pure` imports the pure-Python modules even where the compiled ones are
built (tools/compile_detectors.py `pure_python`), and the output says which ran.
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, Any, cast

import orjson

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel
    from detectors.run import Applied
    from pipeline.config import DetectionConfig


class FlaggingModel:
    """Quacks like `BehaviourModel` (no day forest): scores a vector by a fixed hash of its
    values and flags the highest few, so that hours are flagged, learned and worded."""

    name = "parity"
    threshold = 0.95

    def __init__(self) -> None:
        from detectors.behaviour.features import FEATURES, KINDS, MONOTONE

        self.day = None
        self.early = {kind: tuple(20.0 for _ in MONOTONE) for kind in KINDS}
        self.meta: dict[str, Any] = {
            "baseline": {kind: {f: {"mean": 1.0, "std": 2.0} for f in FEATURES} for kind in KINDS}
        }

    def score(self, vectors: list[list[float]]) -> list[float]:
        return [
            int.from_bytes(hashlib.sha256(orjson.dumps(list(v))).digest()[:4], "big") / 2**32
            for v in vectors
        ]

    def out_of_range(self, vector: list[float]) -> list[str]:
        return [] if vector[0] < 40 else ["events"]

    def flags(self, vector: list[float], score: float) -> bool:
        return score > self.threshold


def fold_event(
    raw: dict[str, Any],
    states: dict[str, dict[str, Any]],
    open_alerts: dict[str, Any],
    config: DetectionConfig,
    model: BehaviourModel,
) -> Applied:
    """One simulated event through `apply_event` of its account's state (made in `states` on its
    first event), at the account's next seq; `open_alerts` kept like the worker's table (the
    alerts raised are opened, those closed dropped)."""
    from detectors.run import apply_event, new_state
    from pipeline.event import normalize

    event = normalize(raw)
    state = states.setdefault(event["account_id"], new_state())
    applied = apply_event(
        state, event, int(state.get("seq", 0)) + 1, config, model, open_alerts.get
    )
    assert applied is not None
    for alert in applied.alerts:
        open_alerts[alert["alert_id"]] = alert
    for key in applied.closed:
        open_alerts.pop(key, None)
    return applied


def run(seed: int, count: int) -> dict[str, Any]:
    from pipeline.config import DetectionConfig
    from pipeline.simulation.traffic import ATTACKS, generate

    config = DetectionConfig()
    model = cast("BehaviourModel", FlaggingModel())
    states: dict[str, dict[str, Any]] = {}
    open_alerts: dict[str, Any] = {}
    ids: list[str] = []
    fired: dict[str, int] = {}
    alerts = hashlib.sha256()
    closed = 0
    for raw, _ in generate(
        count, seed=seed, accounts=8, providers=5, attack_rate=0.01, attack_kinds=ATTACKS
    ):
        applied = fold_event(raw, states, open_alerts, config, model)
        for alert in applied.alerts:
            ids.append(alert["alert_id"])
            fired[alert["detector"]] = fired.get(alert["detector"], 0) + 1
            alerts.update(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
        closed += len(applied.closed)
    return {
        "variant": variant(),
        "alert_ids": ids,
        "detectors": fired,
        "alerts_digest": alerts.hexdigest(),
        "closed": closed,
        "state_digest": hashlib.sha256(
            orjson.dumps(states, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
    }


def variant() -> dict[str, list[str]]:
    """The modules of the build this process loaded, compiled and not."""
    from tools.compile_detectors import loaded

    return loaded()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--pure":
        from tools.compile_detectors import pure_python

        pure_python()
        args = args[1:]
    sys.stdout.write(orjson.dumps(run(int(args[0]), int(args[1]))).decode() + "\n")
