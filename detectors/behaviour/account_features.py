"""One account's behaviour features over time: the state the ML detector and training both fold.

`AccountFeatures` folds an account's events (in `seq` order, on event time) into the open hours
of its principals and providers and closes them into vectors (detectors/behaviour/features.py);
`build` does the same for a whole history, the batch path of training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from detectors.behaviour.features import (
    FAMILIES,
    HOUR_MS,
    IDLE_HOURS,
    Closed,
    add,
    close,
    is_off_hours,
    new_window,
    principal_key,
    provider_key,
    vector,
)
from detectors.windows import epoch_ms
from pipeline.authorization import Grant
from pipeline.event import Event


class AccountFeatures:
    """One account's principals and their open hours, over a JSON dict owned by the caller.

    `state` is `{"hour": last event hour, "p": {key: principal}}`; a principal is
    `{"w": open window, "known": {network: 1}, "mix": [usual family shares], "hours": n, "last": h}`.
    A provider's aggregate over its principals is one more such entry, keyed `provider|*` and
    marked `"agg": 1`; every provider event is added to both (one `add` each).
    """

    __slots__ = ("state",)

    def __init__(self, state: dict[str, Any]) -> None:
        state.setdefault("hour", -1)
        state.setdefault("p", {})
        self.state = state

    def observe(self, event: Event, live: list[Grant]) -> list[Closed]:
        """Fold `event` (with its covering grants); return the hours its arrival closed."""
        hour = epoch_ms(event["occurred_at"]) // HOUR_MS
        closed = self.advance(hour) if hour > self.state["hour"] else []
        key = principal_key(event)
        if key is not None:
            off = is_off_hours(event["occurred_at"], live)
            self._entry(key, hour, False)
            add(self.state["p"][key], event, off)
            aggregate = provider_key(key)
            self._entry(aggregate, hour, True)
            add(self.state["p"][aggregate], event, off)
        return closed

    def _entry(self, key: str, hour: int, aggregate: bool) -> None:
        """Make sure `key` has an entry with an open window (a late event joins the open one)."""
        entry = self.state["p"].get(key)
        if entry is None:
            entry = self.state["p"][key] = {
                "known": {},
                "mix": [0.0] * len(FAMILIES),
                "hours": 0,
                "last": hour,
            }
            if aggregate:
                entry["agg"] = 1
        if "w" not in entry:
            entry["w"] = new_window(hour)

    def advance(self, hour: int) -> list[Closed]:
        """Move the account's clock to `hour`: close every window of an earlier hour."""
        self.state["hour"] = hour
        closed = []
        principals = self.state["p"]
        for key in list(principals):
            principal = principals[key]
            if "w" in principal and principal["w"]["h"] < hour:
                closed.append(close(key, principal))
            elif "w" not in principal and hour - principal["last"] > IDLE_HOURS:
                del principals[key]
        return closed

    def open_vector(self, key: str) -> list[float] | None:
        """The vector of a principal's (or a `provider|*` aggregate's) still open hour (for early scoring)."""
        principal = self.state["p"].get(key)
        return vector(principal) if principal is not None and "w" in principal else None


def build(events: Iterable[Event]) -> Iterator[tuple[str, Closed]]:
    """(account, closed hour) for a history of normalized events, each account's in `seq` order.

    The batch path (training from the warehouse): authorization is folded from the same events
    exactly as `detectors.run.observe` does, so covering grants (and office hours) agree.
    """
    from pipeline import authorization
    from pipeline.authorization import covering

    accounts: dict[str, tuple[dict[str, Any], AccountFeatures]] = {}
    for event in events:
        account = event["account_id"]
        found = accounts.get(account)
        if found is None:
            found = accounts[account] = (authorization.empty(), AccountFeatures({}))
        auth, features = found
        if event["action"] in authorization.AUTHORIZATION_ACTIONS:
            authorization.apply(auth, event)
        live = covering(auth["grants"], event) if principal_key(event) is not None else []
        for closed in features.observe(event, live):
            yield account, closed
