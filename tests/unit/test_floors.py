"""The sweeps that skip a dict by its floor (pipeline/floors.py) close and forget exactly what a
walk of every entry did: `pipeline.alert.expired` against `closed_alerts`, and
`detectors.rates.forget_idle` against the walk it replaced, on sequences with late writes (an
entry older than the floor a sweep left), event time going back, and dicts passed through their
stored JSON form (a recovery's new objects)."""

from __future__ import annotations

import gc
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import rates
from pipeline import floors
from pipeline.alert import _OPEN, closed_alerts, expired, keep_open
from pipeline.event import format_ms
from pipeline.floors import Floors

_DAY = 86_400_000
_START = 1_790_000_000_000


def test_a_floor_is_held_per_dict_and_only_lowered() -> None:
    floors = Floors(2)
    a: dict[str, int] = {"x": 5}
    b: dict[str, int] = {"x": 5}
    assert floors.floor(a) is None
    floors.lower(a, 1)  # no floor held: still unknown, not 1
    assert floors.floor(a) is None
    floors.put(a, 5)
    assert floors.floor(a) == 5 and floors.floor(b) is None
    floors.lower(a, 7)
    assert floors.floor(a) == 5
    floors.lower(a, 3)
    assert floors.floor(a) == 3
    floors.put(b, 4)
    floors.put({}, 0)  # a third dict: full, emptied first
    assert floors.floor(a) is None and floors.floor(b) is None and len(floors) == 1
    floors.put(a, 2)
    floors.forget(a)
    assert floors.floor(a) is None


def test_a_dict_whose_floor_is_held_keeps_its_identity() -> None:
    """The floor holds its dict: a dict made after the caller dropped its own cannot take the id
    and inherit a floor."""
    floors = Floors(8)
    gone: dict[str, int] = {"x": 9}
    floors.put(gone, 9)
    ident = id(gone)
    del gone
    gc.collect()
    fresh = [{"y": 1} for _ in range(1000)]
    assert all(floors.floor(d) is None for d in fresh)
    assert any(ident == id(held) for held, _ in floors._floors.values())


def test_an_older_alert_after_a_sweep_is_closed_in_time() -> None:
    """`keep_open` lowers the floor: an alert kept open with evidence older than every alert the
    last sweep saw closes when its own horizon passes, not when theirs do."""
    opened: dict[str, str] = {}
    keep_open(opened, "new", "2026-11-10T00:00:00.000Z")
    assert expired(opened, "2026-11-10T00:00:01.000Z") == []  # the floor: the 10th
    keep_open(opened, "late", "2026-11-01T00:00:00.000Z")  # a late event's alert
    now = "2026-11-08T00:00:01.000Z"
    assert closed_alerts(opened, now) == ["late"]
    assert expired(opened, now) == ["late"]


def test_an_alert_closed_while_its_dict_had_no_floor() -> None:
    opened = {"a": "2026-11-01T00:00:00.000Z"}  # loaded, never swept
    assert expired(opened, "2026-11-09T00:00:00.000Z") == ["a"]


_times = st.integers(min_value=0, max_value=30 * _DAY).map(lambda ms: format_ms(_START + ms))
_alert_ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from("abcdefgh"), _times),
        st.tuples(st.just("sweep"), st.just(""), _times),
        st.tuples(st.just("reload"), st.just(""), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_alert_ops)
def test_expired_closes_what_closed_alerts_closes(ops: list[tuple[str, str, str]]) -> None:
    opened: dict[str, str] = {}
    walked: dict[str, str] = {}
    for op, alert, at in ops:
        if op == "open":
            keep_open(opened, alert, at)
            walked[alert] = at
        elif op == "reload":
            opened = orjson.loads(orjson.dumps(opened))
        else:
            closed = expired(opened, at)
            assert closed == closed_alerts(walked, at)
            for key in closed:
                del opened[key]
                del walked[key]
        assert list(opened.items()) == list(walked.items())
        floor = _OPEN.floor(opened)
        assert floor is None or not opened or floor <= min(opened.values())


def _walk(records: dict[str, Any], cutoff: int) -> None:
    """The `forget_idle` before floors."""
    for idle in [k for k, r in records.items() if r["h"] < cutoff]:
        del records[idle]


_IDLE_HOURS = 48
_rate_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from("pqrst"), st.integers(min_value=0, max_value=400)),
        st.tuples(st.just("reload"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_rate_ops)
def test_forget_idle_forgets_what_the_walk_forgot(ops: list[tuple[str, int]]) -> None:
    """As `rates.count` and api_rate_exceeded write after it: a new record of the event's hour
    (which may be a late one, older than the records' floor), or a record's hour raised."""
    records: dict[str, Any] = {}
    walked: dict[str, Any] = {}
    for key, hour in ops:
        if key == "reload":
            records = orjson.loads(orjson.dumps(records))
            continue
        rates.forget_idle(records, hour - _IDLE_HOURS, hour)
        _walk(walked, hour - _IDLE_HOURS)
        assert orjson.dumps(records) == orjson.dumps(walked)
        for state in (records, walked):
            mine = state.get(key)
            if mine is None:
                state[key] = {"h": hour}
            elif hour > mine["h"]:
                mine["h"] = hour


def test_a_late_new_record_lowers_the_floor() -> None:
    records: dict[str, Any] = {"p": {"h": 100}}
    rates.forget_idle(records, 100 - _IDLE_HOURS, 100)  # walked: the floor is 100
    rates.forget_idle(records, 60 - _IDLE_HOURS, 60)  # a late event of a new key: hour 60
    records["q"] = {"h": 60}
    rates.forget_idle(records, 109 - _IDLE_HOURS, 109)  # the cutoff, 61, passes q, not p
    assert list(records) == ["p"]


def test_a_walk_keeps_the_least_hour_left() -> None:
    """A loaded dict (no floor) walked at a later hour: the floor is its oldest record's, not the
    event's."""
    records: dict[str, Any] = orjson.loads(b'{"p":{"h":100},"q":{"h":130}}')
    rates.forget_idle(records, 120 - _IDLE_HOURS, 120)
    records["r"] = {"h": 120}
    rates.forget_idle(records, 149 - _IDLE_HOURS, 149)  # the cutoff, 101, passes p
    assert list(records) == ["q", "r"]


def test_a_sweep_inside_the_floor_does_not_read_the_dict() -> None:
    """The skip is real: a value written behind the floors' back (not through `keep_open`, not
    after `forget_idle`) is not seen until the floors are cleared (`clear_all`, as a revoke, a
    reload or a repair does), after which the sweep walks again."""
    opened: dict[str, str] = {}
    keep_open(opened, "new", "2026-11-10T00:00:00.000Z")
    assert expired(opened, "2026-11-10T00:00:01.000Z") == []
    opened["behind"] = "2026-11-01T00:00:00.000Z"  # not through keep_open
    now = "2026-11-08T00:00:01.000Z"
    assert expired(opened, now) == []  # skipped by the floor, the 10th
    records: dict[str, Any] = {"p": {"h": 100}}
    rates.forget_idle(records, 100 - _IDLE_HOURS, 100)
    records["behind"] = {"h": 10}  # older than any cutoff below
    rates.forget_idle(records, 101 - _IDLE_HOURS, 101)
    assert "behind" in records
    floors.clear_all()
    assert _OPEN.floor(opened) is None
    assert expired(opened, now) == ["behind"]
    rates.forget_idle(records, 101 - _IDLE_HOURS, 101)
    assert list(records) == ["p"]


def test_a_sweep_that_closes_everything_forgets_the_floor() -> None:
    opened: dict[str, str] = {}
    keep_open(opened, "a", "2026-11-01T00:00:00.000Z")
    assert expired(opened, "2026-11-01T00:00:01.000Z") == []
    assert _OPEN.floor(opened) == "2026-11-01T00:00:00.000Z"
    assert expired(opened, "2026-11-20T00:00:00.000Z") == ["a"]
    assert _OPEN.floor(opened) is None
