"""Open alerts close after OPEN_DAYS without evidence (event time), keeping agent state bounded."""

from __future__ import annotations

from pipeline.alert import OPEN_DAYS, closed_alerts


def test_alerts_close_after_the_open_days_without_evidence() -> None:
    opened = {"a": "2026-11-01T10:00:00.000Z", "b": "2026-11-07T09:00:00.000Z"}
    assert closed_alerts(opened, "2026-11-08T09:59:59.999Z") == []
    assert closed_alerts(opened, "2026-11-08T10:00:00.001Z") == ["a"]
    assert sorted(closed_alerts(opened, "2026-11-20T00:00:00.000Z")) == ["a", "b"]
    assert OPEN_DAYS >= 3  # the takeover rule folds payouts into one alert for 72 h
