"""Scoring detectors against a labelled stream: recall per attack kind, precision, false alerts.

Ground truth comes from the simulator: every attack event carries its kind and its instance
(`...-atk<N>` in the event id). A detector *catches* an instance when one of its alerts names
one of the instance's events as evidence. An alert is *true* when its evidence includes any
attack event (of any kind: a stolen credential used from abroad is rightly flagged by several
rules), and *false* when it names only benign events.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_INSTANCE = re.compile(r"-atk(\d+)$")


@dataclass
class DetectorScore:
    detector: str
    alerts: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    instances: int = 0
    caught: int = 0

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.instances if self.instances else None


@dataclass
class Report:
    events: int
    benign_events: int
    attack_instances: int
    scores: dict[str, DetectorScore] = field(default_factory=dict)

    @property
    def false_alerts(self) -> int:
        return sum(s.false_alerts for s in self.scores.values())

    @property
    def false_alerts_per_10k_benign(self) -> float:
        return 10_000 * self.false_alerts / max(1, self.benign_events)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "benign_events": self.benign_events,
            "attack_instances": self.attack_instances,
            "false_alerts": self.false_alerts,
            "false_alerts_per_10k_benign": round(self.false_alerts_per_10k_benign, 3),
            "detectors": [
                {
                    "detector": s.detector,
                    "alerts": s.alerts,
                    "true_alerts": s.true_alerts,
                    "false_alerts": s.false_alerts,
                    "injected": s.instances,
                    "caught": s.caught,
                    "recall": s.recall,
                    "precision": s.precision,
                }
                for s in sorted(self.scores.values(), key=lambda s: s.detector)
            ],
        }


def score(labelled: Iterable[tuple[str, str | None]], alerts: Iterable[dict[str, Any]]) -> Report:
    """`labelled`: (event_id, attack kind or None) of every event sent; `alerts`: latest versions."""
    kind_of: dict[str, str] = {}
    instance_of: dict[str, str] = {}
    instances: dict[str, set[str]] = defaultdict(set)
    events = benign = 0
    for event_id, kind in labelled:
        events += 1
        if kind is None:
            benign += 1
            continue
        kind_of[event_id] = kind
        match = _INSTANCE.search(event_id)
        instance = match.group(1) if match else event_id
        instance_of[event_id] = instance
        instances[kind].add(instance)
    report = Report(events, benign, sum(len(v) for v in instances.values()))
    caught: dict[str, set[str]] = defaultdict(set)
    for alert in alerts:
        s = report.scores.setdefault(alert["detector"], DetectorScore(alert["detector"]))
        s.alerts += 1
        evidence = [e for e in alert["evidence_event_ids"] if e in kind_of]
        if evidence:
            s.true_alerts += 1
        else:
            s.false_alerts += 1
        for event_id in evidence:
            if kind_of[event_id] == alert["detector"]:
                caught[alert["detector"]].add(instance_of[event_id])
    for kind, found in instances.items():
        s = report.scores.setdefault(kind, DetectorScore(kind))
        s.instances = len(found)
        s.caught = len(caught[kind] & found)
    return report
