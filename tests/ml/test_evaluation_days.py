"""`evaluate --ml` with days: a multi-day erosion that no hour shows ranks above every benign day,
and the report gives ROC-AUC per kind (each on the vectors it is judged on) and false alerts per
10,000 benign events, consistent with the stream's own labels."""

from __future__ import annotations

import re

import pytest

from detectors.behaviour.evaluation import Prepared, offline, prepare, score_test
from detectors.behaviour.training import DEFAULT_DAY_TARGET_PER_10K, DEFAULT_TARGET_PER_10K
from pipeline.simulation.behaviour import JUDGED_ON, KINDS, LABEL_PREFIX, ROTATION

SEED = 13  # not an acceptance seed (7, 23)


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    """About 4.5 days of history, then one of each episode (the erosion last) and a closing day."""
    return prepare(
        train_events=90_000,
        test_events=110_000,
        seed=SEED,
        events_per_hour=1800.0,
        episodes=len(ROTATION),
        target_per_10k=DEFAULT_TARGET_PER_10K,
        day_target_per_10k=DEFAULT_DAY_TARGET_PER_10K,
    )


def test_the_erosion_days_rank_above_every_benign_day_and_no_hour_shows_it(
    prepared: Prepared,
) -> None:
    assert prepared.complete and prepared.trained.meta["day"] is not None
    days = score_test(prepared)["day"]
    erosion = [
        d
        for d, labels in zip(days.detector, days.labels, strict=True)
        if labels == {"multi_day_erosion"}
    ]
    benign = [d for d, labels in zip(days.detector, days.labels, strict=True) if not labels]
    # each erosion day, on the account and across the provider's accounts
    assert len(erosion) == 6 and len(benign) > 20
    on_account = [
        d
        for d, labels, kind in zip(days.detector, days.labels, days.kinds, strict=True)
        if labels == {"multi_day_erosion"} and kind == "provider_day"
    ]
    assert len(on_account) == 3
    assert min(on_account) > max(benign)
    report = offline(prepared)["per_kind"]["multi_day_erosion"]
    assert report["judged_on"] == "day" and report["roc_auc"] >= 0.9
    assert report["episodes_caught"] == report["episodes"] == 1
    assert report["hour"]["roc_auc"] < 0.8  # every hour of it looks like an ordinary hour


def test_the_report_gives_roc_auc_per_kind_and_false_alerts_per_10k_benign_events(
    prepared: Prepared,
) -> None:
    report = offline(prepared)
    assert set(report["per_kind"]) == set(KINDS)
    for kind, row in report["per_kind"].items():
        assert row["judged_on"] == JUDGED_ON[kind]
        assert row["roc_auc"] == row[JUDGED_ON[kind]]["roc_auc"] is not None
        assert 0.0 <= row["roc_auc"] <= 1.0 and row["episodes"] == 1
    # counted independently from the stream: episodes, anomalous vectors, benign test events
    episodes = {
        m.group(1)
        for e, label in prepared.stream
        if label
        and label.startswith(LABEL_PREFIX)
        and (m := re.search(r"-bhv(\d+)$", e["event_id"]))
    }
    assert report["episodes"] == len(episodes) == len(KINDS)
    per_vector = report["per_vector_kind"]
    assert set(per_vector) == {"principal", "provider", "provider_day", "provider_accounts_day"}
    assert sum(v["anomalous"] for v in per_vector.values()) == sum(
        report["test_anomalous_vectors"].values()
    )
    assert report["false_alerts"] == sum(v["false_alerts"] for v in per_vector.values())
    assert report["false_alerts_per_10k_benign"] == round(
        10_000 * report["false_alerts"] / report["test_benign_events"], 3
    )
    assert report["lookalike_vectors"] > 0 and report["lookalike_vectors_flagged"] == 0


def test_the_cli_prints_roc_auc_per_kind(
    prepared: Prepared, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from partnerwatch import terminal
    from partnerwatch.ml import print_ml_report

    monkeypatch.setattr(terminal.console, "width", 250)  # one line per row

    print_ml_report({"seed": SEED, "offline_vectors": offline(prepared)})
    out = capsys.readouterr().out
    for kind in KINDS:
        assert re.search(rf"{kind}\s.*\d\.\d{{3}}", out), kind
    assert "per 10,000 benign" in out
