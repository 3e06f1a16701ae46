"""Open alerts close after OPEN_DAYS without evidence (event time), keeping agent state bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.alert import OPEN_DAYS, _horizon, closed_alerts
from pipeline.event import Rejected, format_ms, timestamp_ms


def test_alerts_close_after_the_open_days_without_evidence() -> None:
    opened = {"a": "2026-11-01T10:00:00.000Z", "b": "2026-11-07T09:00:00.000Z"}
    assert closed_alerts(opened, "2026-11-08T09:59:59.999Z") == []
    assert closed_alerts(opened, "2026-11-08T10:00:00.001Z") == ["a"]
    assert sorted(closed_alerts(opened, "2026-11-20T00:00:00.000Z")) == ["a", "b"]
    assert OPEN_DAYS >= 3  # the takeover rule folds payouts into one alert for 72 h


def _general_horizon(now: str, days: int) -> str:
    try:
        return format_ms(timestamp_ms(now, "now") - days * 86_400_000)
    except Rejected as exc:
        return f"rejected: {exc.reason}"


def _horizon_of(now: str, days: int) -> str:
    try:
        return _horizon(now, days)
    except Rejected as exc:
        return f"rejected: {exc.reason}"


_two = st.text(st.sampled_from("0123456789"), min_size=2, max_size=2)
_times = st.builds(
    lambda y, mo, d, h, mi, s, ms: f"{y}-{mo}-{d}T{h}:{mi}:{s}.{ms}Z",
    st.sampled_from(["1969", "1970", "2000", "2024", "2026", "2100", "2200", "2201"])
    | st.text(st.sampled_from("0123456789"), min_size=4, max_size=4),
    _two,
    _two,
    _two,
    _two,
    _two,
    st.text(st.sampled_from("0123456789"), min_size=3, max_size=3),
)


@settings(max_examples=1500, deadline=None)
@given(_times, st.integers(min_value=0, max_value=400))
def test_the_horizon_is_the_time_days_before(now: str, days: int) -> None:
    """`closed_alerts`' horizon takes the day from a cache for a normalized time: the same
    string as parsing and formatting the whole time, or the same refusal."""
    assert _horizon_of(now, days) == _general_horizon(now, days)


@pytest.mark.parametrize(
    "now",
    [
        "1970-01-03T00:00:00.000Z",
        "2024-03-01T00:00:00.000Z",
        "2024-02-29T23:59:59.999Z",
        "2023-02-29T00:00:00.000Z",
        "2200-12-31T23:59:59.999Z",
        "2201-01-01T00:00:00.000Z",
        "2026-12-02T24:00:00.000Z",
        "2026-12-02T23:59:60.000Z",
        "2026-12-02T10:00:00Z",
        "2026-12-02T10:00:00.000+00:00",
    ],
)
def test_horizon_edges(now: str) -> None:
    assert _horizon_of(now, OPEN_DAYS) == _general_horizon(now, OPEN_DAYS)


_SUFFIXES = [
    ":00.000Z",
    ":59.999Z",
    ":60.000Z",
    ":6a.000Z",
    ":0\u0663.000Z",  # an Arabic-Indic digit: a digit to str.isdigit, not to [0-9]
    ":00.00\u0663Z",
    ":00,000Z",
    ":00.000z",
    ":00.000Z ",
    ":00.000",
    "-00.000Z",
    ":00.0000Z",
]


@pytest.mark.parametrize("minute", ["2026-11-08T10:00", "2024-02-29T23:59", "1970-01-08T00:00"])
def test_a_minute_seen_before_reads_the_rest_as_the_regular_path_would(minute: str) -> None:
    """`_horizon`'s memo by the minute (OPEN_DAYS): once a minute is known, every other time of
    that minute, well-formed or not, gives what the regular path gives."""
    assert _horizon_of(minute + ":30.500Z", OPEN_DAYS) == _general_horizon(
        minute + ":30.500Z", OPEN_DAYS
    )
    for suffix in _SUFFIXES:
        now = minute + suffix
        assert _horizon_of(now, OPEN_DAYS) == _general_horizon(now, OPEN_DAYS), now


@settings(max_examples=500, deadline=None)
@given(_times, st.sampled_from(_SUFFIXES) | st.text(max_size=9))
def test_the_memo_by_minute_agrees_with_parsing(now: str, suffix: str) -> None:
    _horizon_of(now, OPEN_DAYS)  # its minute remembered when it is well-formed
    other = now[:16] + suffix
    assert _horizon_of(other, OPEN_DAYS) == _general_horizon(other, OPEN_DAYS), other


def test_the_memo_by_minute_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-running worker's event time moves on: a full memo is emptied, not frozen."""
    import pipeline.alert as alert

    monkeypatch.setattr(alert, "_MAX_MINUTES", 3)
    alert._OPEN_MINUTES.clear()
    for minute in range(5):
        now = f"2026-11-08T10:0{minute}:00.000Z"
        assert _horizon(now, OPEN_DAYS) == _general_horizon(now, OPEN_DAYS)
    assert "2026-11-08T10:04" in alert._OPEN_MINUTES
    assert len(alert._OPEN_MINUTES) <= 3
