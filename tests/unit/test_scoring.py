"""pipeline/simulation/scoring.py: the figures `partnerwatch evaluate` reports, on a hand-made case.

Ten events: seven benign, two events of one `ip_churn` attack instance (`-atk1`) and one event
of a `refund_burst` instance (`-atk2`). Four alerts: ip_churn naming one event of instance 1
(true, catches it), ip_churn naming only benign events (false), impossible_travel naming the
ip_churn attack (true for precision, but it catches nothing: not its kind), refund_burst naming
benign events only (false: instance 2 is missed). Every figure below is counted by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.simulation.scoring import score

LABELLED = [
    *((f"ev-{n}", None) for n in range(7)),
    ("ev-7-atk1", "ip_churn"),
    ("ev-8-atk1", "ip_churn"),
    ("ev-9-atk2", "refund_burst"),
]


def alert(detector: str, *evidence: str) -> dict[str, Any]:
    return {"detector": detector, "evidence_event_ids": list(evidence)}


ALERTS = [
    alert("ip_churn", "ev-1", "ev-8-atk1"),
    alert("ip_churn", "ev-2", "ev-3"),
    alert("impossible_travel", "ev-7-atk1"),
    alert("refund_burst", "ev-4"),
]


def test_counts_per_detector_and_overall() -> None:
    report = score(LABELLED, ALERTS)
    assert (report.events, report.benign_events, report.attack_instances) == (10, 7, 2)
    assert report.false_alerts == 2
    assert report.false_alerts_per_10k_benign == pytest.approx(10_000 * 2 / 7)
    rows = {r["detector"]: r for r in report.as_dict()["detectors"]}
    assert list(rows) == ["impossible_travel", "ip_churn", "refund_burst"]  # sorted
    assert rows["ip_churn"] == {
        "detector": "ip_churn",
        "alerts": 2,
        "true_alerts": 1,
        "false_alerts": 1,
        "injected": 1,
        "caught": 1,
        "recall": 1.0,
        "precision": 0.5,
    }
    assert rows["impossible_travel"] == {
        "detector": "impossible_travel",
        "alerts": 1,
        "true_alerts": 1,
        "false_alerts": 0,
        "injected": 0,
        "caught": 0,
        "recall": None,
        "precision": 1.0,
    }
    assert rows["refund_burst"] == {
        "detector": "refund_burst",
        "alerts": 1,
        "true_alerts": 0,
        "false_alerts": 1,
        "injected": 1,
        "caught": 0,
        "recall": 0.0,
        "precision": 0.0,
    }
    assert report.as_dict()["false_alerts_per_10k_benign"] == 2857.143


def test_an_instance_caught_twice_counts_once_and_a_silent_detector_has_no_precision() -> None:
    report = score(
        LABELLED, [alert("ip_churn", "ev-7-atk1"), alert("ip_churn", "ev-8-atk1", "ev-7-atk1")]
    )
    rows = {r["detector"]: r for r in report.as_dict()["detectors"]}
    assert rows["ip_churn"]["caught"] == 1 and rows["ip_churn"]["true_alerts"] == 2
    assert rows["refund_burst"]["alerts"] == 0 and rows["refund_burst"]["precision"] is None
    assert rows["refund_burst"]["recall"] == 0.0


def test_an_event_id_without_an_instance_suffix_is_its_own_instance() -> None:
    labelled = [("a", "refund_burst"), ("b", "refund_burst"), ("c", None)]
    report = score(labelled, [alert("refund_burst", "a")])
    assert report.attack_instances == 2
    (row,) = report.as_dict()["detectors"]
    assert (row["injected"], row["caught"], row["recall"]) == (2, 1, 0.5)
