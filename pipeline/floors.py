"""Lower bounds of the values in a state's dicts, so a per-event sweep can tell that nothing in a
dict is old enough to go without reading the dict.

The detect path sweeps two kinds of dict on every event: an account's open alerts (alert id ->
last evidence; `pipeline.alert.expired`) and the rate detectors' records by provider or principal
(`detectors.rates.forget_idle`, records by their newest hour). Nearly always nothing goes, but the
sweep reads every entry, and each is an object the event touches nowhere else: under a profiler
of the worker the two sweeps were about 6.5 % of its CPU (8 with the horizon's computation),
most of it cache misses. A `Floors` holds, for each dict a sweep walked, a value at or below
every value in it: a sweep (`Floors.below`) whose cutoff is at or below the floor skips the dict;
otherwise it walks it as before and puts the remaining entries' least value.

The floor is kept beside the state, never in it: the state stays byte for byte what the
changelog stored before (tests/detectors/test_state_sameness.py). A dict is known by its
identity, and the `Floors` holds the dict itself, so that its id is not reused while its floor is
held; full, it is emptied (the next sweep of each dict walks it again), and `clear_all` empties
every `Floors` where states are dropped or replaced. A dict loaded from a changelog or a
snapshot is a new object, without a floor: its first sweep walks it.

What keeps a floor true: it is set by a sweep to the least value it left, and every later write
that may bring a value below it calls `lower` (a new entry, or one whose value went down); a
write that only raises a value leaves it a lower bound. The dicts are written only by the
functions that sweep them (`pipeline.alert.keep_open`, and the rate detectors after
`forget_idle`). Each partition's state has one writer; a `get` and a `put` are each one dict
operation under the GIL, and a floor forgotten by another thread's `clear_all` only means a walk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, final


@final
class Floors:
    """A lower bound of the values of each dict put, for at most `limit` dicts."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"floors are held for at least one dict, not {limit}")
        self.limit = limit
        # id(dict) -> (the dict, its floor): the dict is held so that its id stays its own
        self._floors: dict[int, tuple[dict[Any, Any], Any]] = {}
        _ALL.append(self)

    def floor(self, values: dict[Any, Any]) -> Any:
        """The floor held for `values`, else None (unknown: walk the dict)."""
        held = self._floors.get(id(values))
        return None if held is None else held[1]

    def put(self, values: dict[Any, Any], floor: Any) -> None:
        """Hold `floor` for `values`: at or below each of its values (emptied first if full)."""
        floors = self._floors
        if len(floors) >= self.limit:
            floors.clear()
        floors[id(values)] = (values, floor)

    def lower(self, values: dict[Any, Any], value: Any) -> None:
        """`value` was written into `values`: lower its floor to it if it is below (nothing while
        no floor is held)."""
        held = self._floors.get(id(values))
        if held is not None and value < held[1]:
            self._floors[id(values)] = (values, value)

    def below(
        self,
        values: dict[Any, Any],
        cutoff: Any,
        value_of: Callable[[Any], Any] | None = None,
        written: Any = None,
    ) -> list[Any] | None:
        """The sweep: the keys of `values` whose value (`value_of(value)` when given) is below
        `cutoff`, in the dict's order, for the caller to delete; None without reading the dict
        while its floor is at or above `cutoff`. A walk holds the least value it leaves as the
        floor (none left: no floor). `written`: a value the caller writes into `values` next
        (a new entry), which lowers the floor; writes after the sweep may otherwise only raise
        values, or go through `lower`."""
        held = self._floors.get(id(values))
        if held is not None and held[1] >= cutoff:
            if written is not None and written < held[1]:
                self._floors[id(values)] = (values, written)
            return None
        stale: list[Any] = []
        least = written
        for key, value in values.items():
            at = value if value_of is None else value_of(value)
            if at < cutoff:
                stale.append(key)
            elif least is None or at < least:
                least = at
        if least is None:
            self.forget(values)
        else:
            self.put(values, least)
        return stale

    def forget(self, values: dict[Any, Any]) -> None:
        self._floors.pop(id(values), None)

    def clear(self) -> None:
        self._floors.clear()

    def __len__(self) -> int:
        return len(self._floors)


#: Every `Floors` made, for `clear_all`.
_ALL: Final[list[Floors]] = []


def clear_all() -> None:
    """Forget every floor, and let go of the dicts held for them: called where states are dropped
    or replaced (a partition revoked or reloaded, accounts repaired, a retro hunt's replay done),
    so that a dropped state is not kept alive until a `Floors` fills. The next sweep of each live
    dict walks it once."""
    for floors in _ALL:
        floors.clear()
