"""Benchmark (not a test): the behaviour model's training time and what scoring costs the pipeline.

    .venv/bin/python -m bench.ml_training [--events 1000000] [--detect-events 200000]

Records into bench/results/ml_training.json:
- training on `--events` simulated benign events: building the hourly vectors (the feature code
  the detector runs) and fitting the scaled IsolationForest with its threshold, timed apart;
- scoring: one vector per call (an hour closing alone) and per vector in a batch of 100;
- the per-event cost: `detectors.run.observe` over `--detect-events` events with every rule, with
  and without the model (the difference is the accumulator plus the hour-close and early
  scoring), and the accumulator (`AccountFeatures.observe`) alone.
Single process, one core; the machine is shared, so figures vary between runs.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).parent / "results" / "ml_training.json"


def _events(count: int, seed: int) -> list[Any]:
    from pipeline.event import normalize
    from pipeline.simulation.traffic import generate

    return [
        normalize(e) for e, _ in generate(count, seed=seed, attack_kinds=(), events_per_hour=1800)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--detect-events", type=int, default=200_000)
    args = parser.parse_args()

    import numpy as np
    import sklearn

    from detectors.behaviour.account_features import AccountFeatures, build
    from detectors.behaviour.features import principal_key
    from detectors.behaviour.model import BehaviourModel
    from detectors.behaviour.training import fit
    from detectors.run import new_state, observe
    from pipeline import authorization
    from pipeline.authorization import covering
    from pipeline.config import DetectionConfig

    started = time.perf_counter()
    events = _events(args.events, seed=21)
    generate_s = time.perf_counter() - started

    started = time.perf_counter()
    closed = [c for _, c in build(iter(events))]
    features_s = time.perf_counter() - started
    vectors = [c.vector for c in closed]
    started = time.perf_counter()
    trained = fit(vectors, len(events), random_state=0)
    fit_s = time.perf_counter() - started
    model = BehaviourModel("bench", trained.meta, trained.pipeline)

    sample = vectors[:100]
    model.score(sample[:1])  # warm
    calls = 200
    started = time.perf_counter()
    for i in range(calls):
        model.score([sample[i % len(sample)]])
    one_s = (time.perf_counter() - started) / calls
    started = time.perf_counter()
    for _ in range(20):
        model.score(sample)
    batch_s = (time.perf_counter() - started) / 20 / len(sample)

    detect = events[: args.detect_events]
    config = DetectionConfig()
    timings: dict[str, float] = {}
    for label, handle in (("without_model", None), ("with_model", model)):
        states: dict[str, Any] = {}
        started = time.perf_counter()
        for event in detect:
            observe(states.setdefault(event["account_id"], new_state()), event, config, handle)
        timings[label] = time.perf_counter() - started

    auths: dict[str, Any] = {}
    feats: dict[str, AccountFeatures] = {}
    started = time.perf_counter()
    for event in detect:
        account = event["account_id"]
        auth = auths.setdefault(account, authorization.empty())
        if event["action"] in authorization.AUTHORIZATION_ACTIONS:
            authorization.apply(auth, event)
        live = covering(auth["grants"], event) if principal_key(event) is not None else []
        feats.setdefault(account, AccountFeatures({})).observe(event, live)
    accumulator_s = time.perf_counter() - started

    n = len(detect)
    result = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "training": {
            "events": len(events),
            "simulated_days": round((len(events) / 1800 / 0.46) / 24, 1),
            "vectors_principal_and_provider_hours": len(vectors),
            "generate_seconds": round(generate_s, 1),
            "features_seconds": round(features_s, 1),
            "fit_seconds": round(fit_s, 2),
            "train_seconds_total": round(features_s + fit_s, 1),
            "features_events_per_second": round(len(events) / features_s),
            "trees": trained.meta["params"]["trees"],
            "threshold": trained.meta["threshold"],
        },
        "scoring": {
            "one_vector_per_call_ms": round(one_s * 1000, 3),
            "per_vector_in_batch_of_100_ms": round(batch_s * 1000, 4),
        },
        "per_event": {
            "events": n,
            "observe_all_rules_without_model_us": round(timings["without_model"] / n * 1e6, 2),
            "observe_all_rules_with_model_us": round(timings["with_model"] / n * 1e6, 2),
            "added_by_model_us": round(
                (timings["with_model"] - timings["without_model"]) / n * 1e6, 2
            ),
            "accumulator_alone_us": round(accumulator_s / n * 1e6, 2),
            "detect_events_per_second_without_model": round(n / timings["without_model"]),
            "detect_events_per_second_with_model": round(n / timings["with_model"]),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
