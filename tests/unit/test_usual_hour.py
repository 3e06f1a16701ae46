"""`rates.usual_hour` (one pass for the second-highest hour) gives what `sorted(hist)[-2]` gave,
on histories with repeats, ties at the top and any order; still None while the key learns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from detectors import rates


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=rates.MIN_HISTORY, max_size=24))
def test_the_usual_hour_is_the_second_highest(history: list[int]) -> None:
    mine = {"h": 100, "since": 100 - rates.LEARN_HOURS, "n": 1, "hist": history}
    assert rates.usual_hour(mine) == sorted(history)[-2]


def test_ties_and_order() -> None:
    learned = {"h": 100, "since": 0, "n": 1}
    assert rates.usual_hour({**learned, "hist": [9, 9, 1]}) == 9
    assert rates.usual_hour({**learned, "hist": [1, 2, 9]}) == 2
    assert rates.usual_hour({**learned, "hist": [9, 1, 2]}) == 2
    assert rates.usual_hour({**learned, "hist": [1, 9, 8, 9]}) == 9


def test_none_while_learning() -> None:
    assert rates.usual_hour({"h": 100, "since": 100, "n": 1, "hist": [5, 6, 7]}) is None
    assert rates.usual_hour({"h": 100, "since": 0, "n": 1, "hist": [5, 6]}) is None
    assert rates.usual_hour({"h": 100, "since": 0, "n": 1}) is None
