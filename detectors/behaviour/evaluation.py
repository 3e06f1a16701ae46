"""Scoring the behaviour model on injected behavioural anomalies, beside the rules.

One labelled stream (pipeline/simulation/behaviour.py): benign history, then a test window with
behavioural episodes and benign lookalikes (`approved_sale`: large price cuts the seller
approved). The model -- the hour forest and the day forest -- is trained on the history's
vectors and judged on the test window's, two ways:
- offline, on vectors: every closed test vector scored in one batch per forest. Per episode kind,
  ROC-AUC on the vectors of the span it is judged on (`JUDGED_ON`: hours, or days for the
  multi-day kind), against every benign vector of that span, of the detector score (the forest
  score, or past the training range the threshold plus how far past: `Forest.detector_score`,
  which flags exactly as the detector does) and of the forest score alone; the other span's
  ROC-AUC beside it; recall of flagged vectors; episodes with a flagged vector; false alerts
  (flagged vectors holding no episode event, of both spans) per 10,000 benign events;
- streaming, in process (detectors/behaviour/evaluation_stream.py): the whole stream through
  `detectors.run.observe` (every rule plus `behaviour_anomaly`, hours scored on close and early,
  days on close) and the provider-wide stage (its rules and each provider's days across
  accounts), as the worker runs them.

A vector is anomalous when it holds episode events: a principal's hour, its provider's
provider-level hour, the provider's day on the account, and the provider's day across accounts.
The same stream through the real worker on Kafka is partnerwatch/ml_pipeline_eval.py.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from detectors.behaviour.account_features import build_all
from detectors.behaviour.day_features import ALL_ACCOUNTS, DAY_KINDS, DAY_MS, provider_day_key
from detectors.behaviour.features import HOUR, HOUR_MS, Closed, principal_key
from detectors.behaviour.features import KINDS as HOUR_KINDS
from detectors.behaviour.training import (
    DEFAULT_DAY_TARGET_PER_10K,
    DEFAULT_TARGET_PER_10K,
    Trained,
    fit,
)
from detectors.windows import epoch_ms
from pipeline.event import Event, format_ms, normalize
from pipeline.simulation.behaviour import JUDGED_ON, KINDS, LABEL_PREFIX, LOOKALIKE_PREFIX
from pipeline.simulation.behaviour import generate as behaviour_generate

_EPISODE = re.compile(r"-bhv(\d+)$")
VECTOR_KINDS = (*HOUR_KINDS, *DAY_KINDS)
#: (account or `*`, vector key, window): one vector, as an alert names it
Where = tuple[str, str, str]


def auc(labels: list[int], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def windows_of(event: Event) -> list[Where]:
    """The vectors a provider event is counted in: its principal's and provider's hour, its
    provider's day on the account and across accounts."""
    key = principal_key(event) or "|"
    provider = key.partition("|")[0]
    at = epoch_ms(event["occurred_at"])
    hour = format_ms(at // HOUR_MS * HOUR_MS)
    day = format_ms(at // DAY_MS * DAY_MS) + "/P1D"
    account = event["account_id"]
    return [
        (account, key, hour),
        (account, f"{provider}|*", hour),
        (account, provider_day_key(provider), day),
        (ALL_ACCOUNTS, provider_day_key(provider), day),
    ]


def where_of(account: str, closed: Closed) -> Where:
    return (account, closed.key, closed.window)


@dataclass
class Prepared:
    """A labelled stream split into a training window and a test window, and the model fitted on the first."""

    stream: list[tuple[Event, str | None]]
    split_hour: int
    train_count: int
    test_benign: int
    #: vector -> the episode kinds whose events it holds (both spans)
    window_kinds: dict[Where, set[str]]
    #: vector -> the benign lookalike kinds whose events it holds
    lookalike_windows: dict[Where, set[str]]
    episode_windows: dict[str, set[Where]]
    episode_kind: dict[str, str]
    closed: list[tuple[str, Closed]]
    trained: Trained
    #: the benign stream outlasts the episodes by a day boundary and the stage's grace, so every
    #: episode day closes and is judged
    complete: bool

    def in_test(self, closed: Closed) -> bool:
        """A test vector: an hour of the test window, or a day that ends in it."""
        if closed.span == HOUR:
            return closed.hour >= self.split_hour
        return closed.hour + 24 > self.split_hour


def prepare(
    *,
    train_events: int,
    test_events: int,
    seed: int,
    events_per_hour: float,
    episodes: int,
    target_per_10k: float,
    day_target_per_10k: float = DEFAULT_DAY_TARGET_PER_10K,
) -> Prepared:
    stream: list[tuple[Event, str | None]] = [
        (normalize(e), label)
        for e, label in behaviour_generate(
            train_events + test_events,
            seed=seed,
            events_per_hour=events_per_hour,
            anomalies_after=train_events,
            episodes=episodes,
        )
    ]
    benign_seen = 0
    split_hour = 0
    for event, label in stream:
        if label is None:
            benign_seen += 1
            if benign_seen == train_events:
                split_hour = epoch_ms(event["occurred_at"]) // HOUR_MS + 1
                break
    last_benign = max(e["occurred_at"] for e, label in stream if label is None)
    last_episode = max(
        (e["occurred_at"] for e, label in stream if label and label.startswith(LABEL_PREFIX)),
        default="",
    )
    window_kinds: dict[Where, set[str]] = defaultdict(set)
    lookalikes: dict[Where, set[str]] = defaultdict(set)
    episode_windows: dict[str, set[Where]] = defaultdict(set)
    episode_kind: dict[str, str] = {}
    train_count = test_benign = 0
    for event, label in stream:
        anomalous = label is not None and label.startswith(LABEL_PREFIX)
        if epoch_ms(event["occurred_at"]) // HOUR_MS < split_hour:
            train_count += 1
        elif not anomalous:
            test_benign += 1
        if label is None or principal_key(event) is None:
            continue
        if not anomalous:
            for where in windows_of(event):
                lookalikes[where].add(label.removeprefix(LOOKALIKE_PREFIX))
            continue
        kind = label.removeprefix(LABEL_PREFIX)
        match = _EPISODE.search(event["event_id"])
        episode = match.group(1) if match else event["event_id"]
        for where in windows_of(event):
            window_kinds[where].add(kind)
            episode_windows[episode].add(where)
        episode_kind[episode] = kind
    closed = list(build_all(e for e, _ in stream))
    hours = [c.vector for _, c in closed if c.span == HOUR and c.hour < split_hour]
    days = [c.vector for _, c in closed if c.span != HOUR and c.hour + 24 <= split_hour]
    trained = fit(
        hours,
        train_count,
        target_per_10k=target_per_10k,
        random_state=seed,
        day_vectors=days,
        day_target_per_10k=day_target_per_10k,
    )
    return Prepared(
        stream,
        split_hour,
        train_count,
        test_benign,
        dict(window_kinds),
        dict(lookalikes),
        dict(episode_windows),
        episode_kind,
        closed,
        trained,
        not last_episode
        or epoch_ms(last_benign) >= (epoch_ms(last_episode) // DAY_MS + 1) * DAY_MS + 2 * HOUR_MS,
    )


def run(
    *,
    train_events: int = 140_000,
    test_events: int = 180_000,
    seed: int = 11,
    events_per_hour: float = 1800.0,
    episodes: int = 12,
    target_per_10k: float = DEFAULT_TARGET_PER_10K,
    day_target_per_10k: float = DEFAULT_DAY_TARGET_PER_10K,
    streaming: bool = True,
) -> dict[str, Any]:
    started = time.perf_counter()
    p = prepare(
        train_events=train_events,
        test_events=test_events,
        seed=seed,
        events_per_hour=events_per_hour,
        episodes=episodes,
        target_per_10k=target_per_10k,
        day_target_per_10k=day_target_per_10k,
    )
    report: dict[str, Any] = {
        "seed": seed,
        "events_per_hour": events_per_hour,
        "offline_vectors": offline(p),
    }
    if streaming:
        from detectors.behaviour.evaluation_stream import streaming as run_streaming

        report["streaming_in_process"] = run_streaming(p)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


@dataclass
class Scored:
    """The test vectors of one span, scored."""

    where: list[Where]
    kinds: list[str]  # vector kinds
    labels: list[set[str]]  # episode kinds held
    forest: list[float]
    detector: list[float]
    flagged: list[bool]


def score_test(p: Prepared) -> dict[str, Scored]:
    """Every test vector of each span scored by its forest (span -> Scored)."""
    from detectors.behaviour.model import BehaviourModel

    model = BehaviourModel("evaluation", p.trained.meta, p.trained.pipeline, p.trained.day_pipeline)
    out = {}
    for span, forest in (("hour", model), ("day", model.day)):
        test = [(a, c) for a, c in p.closed if c.span == span and p.in_test(c)]
        if forest is None or not test:
            continue
        vectors = [c.vector for _, c in test]
        scores = forest.score(vectors)
        out[span] = Scored(
            [where_of(a, c) for a, c in test],
            [c.kind for _, c in test],
            [p.window_kinds.get(where_of(a, c), set()) for a, c in test],
            scores,
            [forest.detector_score(v, s) for v, s in zip(vectors, scores, strict=True)],
            [forest.flags(v, s) for v, s in zip(vectors, scores, strict=True)],
        )
    return out


def offline(p: Prepared) -> dict[str, Any]:
    scored = score_test(p)
    flagged_windows = {
        w for s in scored.values() for w, f in zip(s.where, s.flagged, strict=True) if f
    }
    false = sum(
        1 for s in scored.values() for f, y in zip(s.flagged, s.labels, strict=True) if f and not y
    )
    # vectors holding approved-sale events and no episode event: benign, must not alert
    lookalikes = set(p.lookalike_windows) - set(p.window_kinds)
    out: dict[str, Any] = {
        "train_events": p.train_count,
        "train_vectors": p.trained.meta["training"]["vectors"],
        "train_day_vectors": (p.trained.meta["day"] or {}).get("training", {}).get("vectors", 0),
        "day_forest": p.trained.meta["day_note"],
        "test_vectors": {span: len(s.where) for span, s in scored.items()},
        "test_anomalous_vectors": {span: sum(map(bool, s.labels)) for span, s in scored.items()},
        "test_benign_events": p.test_benign,
        "roc_auc": {
            span: auc([int(bool(y)) for y in s.labels], s.detector) for span, s in scored.items()
        },
        "threshold": float(p.trained.meta["threshold"]),
        "day_threshold": (p.trained.meta["day"] or {}).get("threshold"),
        "false_alerts": false,
        "false_alerts_per_10k_benign": round(10_000 * false / max(1, p.test_benign), 3),
        "lookalike_vectors": len(lookalikes),
        "lookalike_vectors_flagged": len(lookalikes & flagged_windows),
        "episodes": len(p.episode_windows),
        "episodes_caught": sum(1 for w in p.episode_windows.values() if w & flagged_windows),
        "episodes_complete": p.complete,
        "per_kind": {},
        "per_vector_kind": {},
    }
    for kind in KINDS:
        row: dict[str, Any] = {"judged_on": JUDGED_ON[kind]}
        for span, s in scored.items():
            pick = [i for i, k in enumerate(s.labels) if kind in k or not k]
            y = [int(bool(s.labels[i])) for i in pick]
            row[span] = {
                "vectors": sum(y),
                "roc_auc": auc(y, [s.detector[i] for i in pick]),
                "roc_auc_forest": auc(y, [s.forest[i] for i in pick]),
                "recall": sum(1 for i in pick if s.labels[i] and s.flagged[i]) / sum(y)
                if sum(y)
                else None,
            }
        judged = row.get(JUDGED_ON[kind], {})
        row["roc_auc"] = judged.get("roc_auc")
        row["recall"] = judged.get("recall")
        mine = [e for e, k in p.episode_kind.items() if k == kind]
        row["episodes"] = len(mine)
        row["episodes_caught"] = sum(1 for e in mine if p.episode_windows[e] & flagged_windows)
        out["per_kind"][kind] = row
    for vkind in VECTOR_KINDS:
        of_span = scored.get("hour" if vkind in HOUR_KINDS else "day")
        if of_span is None:
            continue
        s = of_span
        pick = [i for i, k in enumerate(s.kinds) if k == vkind]
        y = [int(bool(s.labels[i])) for i in pick]
        tp = sum(1 for i in pick if s.labels[i] and s.flagged[i])
        fp = sum(1 for i in pick if s.flagged[i] and not s.labels[i])
        out["per_vector_kind"][vkind] = {
            "vectors": len(pick),
            "anomalous": sum(y),
            "roc_auc": auc(y, [s.detector[i] for i in pick]),
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / sum(y) if sum(y) else None,
            "false_alerts": fp,
        }
    return out
