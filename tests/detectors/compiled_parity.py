"""What the parity test of the optional mypyc build (test_compiled_detectors.py) compares: one
simulator stream through detection, as the ingest service folds it, summed up.

`run(seed, count)` feeds `pipeline.simulation.traffic.generate` (every attack kind) through
`detectors.run.apply_event` account by account, with the open alerts kept like the worker's
table and a deterministic stand-in behaviour model, so the behaviour features and
`behaviour_anomaly` run too. It returns the alert ids in the order they were published, a digest
of every alert version, and a digest of the final detection state of every account; and, under
`provider`, the same stream through the provider stage's `Stage` (`provider_fold`: its rules,
the Sigma examples, a stand-in day forest, checkpoints as the snapshot topic stores them).

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
    provider = provider_fold(seed, count)
    return {
        "provider": provider,
        "variant": variant(),
        "alert_ids": ids,
        "detectors": fired,
        "alerts_digest": alerts.hexdigest(),
        "closed": closed,
        "state_digest": hashlib.sha256(
            orjson.dumps(states, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
    }


def day_model() -> BehaviourModel:
    """Quacks like `BehaviourModel` with a day forest (and nothing else the provider stage asks
    for): a real `Forest` whose score is a fixed hash of the vector, flagging about one day in
    ten, so the provider stage's days across accounts are kept, scored, flagged and worded."""
    from detectors.behaviour.day_features import DAY_FEATURES, DAY_KINDS
    from detectors.behaviour.model import Forest

    stats = {"min": -1e12, "max": 1e12, "mean": 1.0, "std": 2.0}

    class HashForest(Forest):
        def score(self, vectors: list[list[float]]) -> list[float]:
            return [
                int.from_bytes(hashlib.sha256(orjson.dumps(list(v))).digest()[:4], "big") / 2**32
                for v in vectors
            ]

    forest = HashForest(
        None,
        threshold=0.9,
        margin=1.0,
        baseline={kind: {f: dict(stats) for f in DAY_FEATURES} for kind in DAY_KINDS},
        features=DAY_FEATURES,
        kinds=DAY_KINDS,
    )

    class DayModel:
        name = "parity-days"
        day = forest

    return cast("BehaviourModel", DayModel())


#: What the provider-wide parity compares: the stage's every detector and the Sigma examples.
SIGMA_EXAMPLES = "examples"


def stored_records(changed: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    """A checkpoint's records as the provider stage writes them to its snapshot topic
    (streams/provider_state.py `write_checkpoint`): key, and the record's bytes or a tombstone."""
    from streams.provider_state import snapshot_records

    return [
        (record_key, None if record is None else orjson.dumps(record))
        for key, value in changed.items()
        for record_key, record in snapshot_records(key, value)
    ]


def provider_fold(
    seed: int,
    count: int,
    *,
    per_hour: float = 3600.0,
    disorder: float = 0.0,
    checkpoint_every: int = 1000,
    reload: bool = False,
) -> dict[str, Any]:
    """A simulator stream (every attack kind) through the provider stage's `Stage`, with the
    Sigma examples and a day forest (`day_model`), as the stage folds the ledger: a checkpoint
    (`take_dirty`) every `checkpoint_every` events, its records hashed as the snapshot topic
    stores them; with `reload`, the stage then starts over from the snapshot topic's latest
    records (streams/provider_state.py `assemble`), as a new holder restores it. `disorder`:
    seconds of arrival disorder (`traffic.disordered`).

    Returns the alert ids in the order published, per detector a digest of its alert versions
    in that order, a digest of every checkpoint's records, and of the final state per part
    (each provider rule's state across providers, the providers' open alerts and days, the
    accounts' authorization, the Sigma windows; orjson, dict order kept)."""
    from datetime import UTC, datetime
    from pathlib import Path

    import detectors.sigma
    from detectors.provider_wide.run import Stage
    from detectors.sigma.evaluate import SigmaRules
    from detectors.sigma.load import load
    from pipeline.config import DetectionConfig
    from pipeline.event import normalize
    from pipeline.simulation.traffic import ATTACKS, disordered, generate
    from streams.provider_state import assemble

    config = DetectionConfig()
    sigma = SigmaRules(load(Path(detectors.sigma.__file__).parent / SIGMA_EXAMPLES))
    model = day_model()
    stream = list(
        generate(
            count,
            seed=seed,
            accounts=8,
            providers=5,
            attack_rate=0.01,
            attack_kinds=ATTACKS,
            start=datetime(2026, 11, 2, 6, 0, tzinfo=UTC),
            events_per_hour=per_hour,
        )
    )
    if disorder:
        stream = disordered(stream, disorder, seed)
    stage = Stage(config, sigma=sigma, model=model)
    ids: list[str] = []
    alerts: dict[str, Any] = {}
    checkpoints = hashlib.sha256()
    topic: dict[str, bytes] = {}
    for n, (raw, _) in enumerate(stream, 1):
        for alert in stage.observe(normalize(raw)):
            ids.append(alert["alert_id"])
            digest = alerts.setdefault(alert["detector"], hashlib.sha256())
            digest.update(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
        if n % checkpoint_every == 0 or n == len(stream):
            for key, record in stored_records(stage.take_dirty()):
                checkpoints.update(key.encode() + b"=" + (record or b"-") + b"\n")
                if record is None:
                    topic.pop(key, None)
                else:
                    topic[key] = record
            if reload:
                restored = assemble({k: orjson.loads(v) for k, v in topic.items()})
                stage = Stage(config, restored, sigma=sigma, model=model)
    parts: dict[str, Any] = {}
    for key in sorted(stage.states):
        value = stage.states[key]
        if key.startswith("p|"):
            for name, own in value["det"].items():
                part = parts.setdefault(f"det:{name}", hashlib.sha256())
                part.update(key.encode() + b"=" + orjson.dumps(own) + b"\n")
            rest = {k: v for k, v in value.items() if k != "det"}
            part = parts.setdefault("provider:rest", hashlib.sha256())
            part.update(key.encode() + b"=" + orjson.dumps([list(value), rest]) + b"\n")
        else:
            part = parts.setdefault(key.partition("|")[0] + "|", hashlib.sha256())
            part.update(key.encode() + b"=" + orjson.dumps(value) + b"\n")
    return {
        "alert_ids": ids,
        "alerts": {name: d.hexdigest() for name, d in sorted(alerts.items())},
        "checkpoints": checkpoints.hexdigest(),
        "states": {name: d.hexdigest() for name, d in sorted(parts.items())},
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
