"""`detectors.windows.epoch_ms` reads a stored timestamp by position: the same milliseconds as
`pipeline.event.timestamp_ms`, and the same refusal of what that refuses.

Checked with hypothesis on stored-form strings (every field over its whole two-digit range, so
impossible dates and times too, each after a time of the same date was read), on the stored form of random instants, and on strings that are
not in the stored form (offsets, other separators, fractions of other lengths, non-ASCII digits);
and, as a minute once read is remembered (`_MINUTES`) and a later time of it read from its seconds
and milliseconds alone, on any ending after a remembered minute. The last time read is
remembered too (`_last`): sequences of times, valid or not, repeated or not, read one after
another without forgetting anything, give what each gives alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import windows
from pipeline.event import format_ms, timestamp_ms
from pipeline.rejection import Rejected


def outcome(fn: Any, ts: str) -> tuple[str, Any]:
    try:
        return "ok", fn(ts)
    except Rejected as e:
        return "rejected", (e.reason, str(e))


def forget_last() -> None:
    """Forget the last time read (`windows._last`), not the days and minutes."""
    windows._last = (object(), 0)


def same(ts: str) -> None:
    forget_last()
    want = outcome(lambda v: timestamp_ms(v, "occurred_at"), ts)
    assert outcome(windows.epoch_ms, ts) == want, ts
    forget_last()
    assert outcome(windows.epoch_ms, ts) == want, ts  # the day is remembered now
    assert outcome(windows.epoch_ms, ts) == want, ts  # and the time itself, if it was one


two = st.integers(0, 99).map(lambda n: f"{n:02d}")


@settings(max_examples=3000, deadline=None)
@given(
    year=st.sampled_from([1969, 1970, 1999, 2000, 2024, 2026, 2100, 2200, 2201, 9999]),
    month=two,
    day=two,
    hour=two,
    minute=two,
    second=two,
    millis=st.integers(0, 999),
)
def test_stored_form_fields_in_any_range(
    year: int, month: str, day: str, hour: str, minute: str, second: str, millis: int
) -> None:
    date = f"{year:04d}-{month}-{day}"
    same(f"{date}T12:00:00.000Z")  # the day remembered, when it is one
    same(f"{date}T{hour}:{minute}:{second}.{millis:03d}Z")


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 7_258_118_399_999))  # 1970 to the end of 2199
def test_stored_form_of_any_instant(ms: int) -> None:
    ts = format_ms(ms)
    same(ts)
    assert windows.epoch_ms(ts) == ms


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(
        [
            "2026-11-02T06:00:00.395+00:00",
            "2026-11-02T06:00:00.395z",
            "2026-11-02 06:00:00.395Z",
            "2026-11-02T06:00:00Z",
            "2026-11-02T06:00:00.39Z",
            "2026-11-02T06:00:00.3950Z",
            "2026-11-02T06:00:00.395+01:30",
            "2026-02-29T06:00:00.395Z",
            "2028-02-29T23:59:59.999Z",
            "2026-11-02T24:00:00.000Z",
            "2026-11-02T06:00:60.000Z",
            "\uff12\uff10\uff12\uff16-11-02T06:00:00.395Z",  # full-width digits
            "2026-11-02T06:00:00.395Z ",
            "",
        ]
    )
    | st.text(max_size=30)
)
def test_other_strings(ts: str) -> None:
    same(ts)


#: Digits and what passes for them elsewhere (`str.isdigit`): full-width, Arabic-Indic, superscript.
DIGITS = "0123456789\uff10\uff15\u0661\u00b2"
#: Endings after `YYYY-MM-DDTHH:MM`: the stored form's (seconds over their whole two-digit range),
#: the stored form's shape with any of `DIGITS`, and anything built of characters that could pass
#: for it.
TAILS = (
    st.builds(
        lambda second, millis: f":{second:02d}.{millis:03d}Z",
        st.integers(0, 99),
        st.integers(0, 999),
    )
    | st.builds(
        lambda second, millis: f":{second}.{millis}Z",
        st.text(alphabet=DIGITS, min_size=2, max_size=2),
        st.text(alphabet=DIGITS, min_size=3, max_size=3),
    )
    | st.text(alphabet=":.Zz+- T" + DIGITS, max_size=12)
)


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, 7_258_118_399_999), TAILS)
def test_any_ending_after_a_remembered_minute(ms: int, tail: str) -> None:
    ts = format_ms(ms)
    windows.clear_caches()
    same(ts)
    assert ts[:16] in windows._MINUTES  # the minute is remembered
    same(ts[:16] + tail)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.integers(0, 7_258_118_399_999).map(format_ms)
        | st.sampled_from(["", "2026-11-02T24:00:00.000Z", "2026-02-29T06:00:00.395Z", "x"])
        | st.text(alphabet=":.Z-T" + DIGITS, max_size=24),
        max_size=12,
    ).flatmap(lambda times: st.permutations(times + times[: len(times) // 2]))
)
def test_a_sequence_read_without_forgetting(times: list[str]) -> None:
    windows.clear_caches()
    for i, ts in enumerate(times):
        # an equal string that is another object, every other time: the memo compares text
        asked = ts[:1] + ts[1:] if i % 2 else ts
        want = outcome(lambda v: timestamp_ms(v, "occurred_at"), ts)
        assert outcome(windows.epoch_ms, asked) == want, (times, ts)


def test_nothing_read_yet_is_no_time() -> None:
    """The memo's starting value answers for no time: an empty string is refused and None is no
    string, as always."""
    windows.clear_caches()
    assert outcome(windows.epoch_ms, "")[0] == "rejected"
    assert outcome(windows.epoch_ms, "\x00")[0] == "rejected"
    with pytest.raises(TypeError):
        windows.epoch_ms(None)  # type: ignore[arg-type]
    windows.clear_caches()
    assert windows.epoch_ms("1970-01-01T00:00:00.000Z") == 0
