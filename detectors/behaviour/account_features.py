"""One account's behaviour features over time: the state the ML detector and training both fold.

`AccountFeatures` folds an account's events (in `seq` order, on event time) into the open hours
of its principals and providers, and the open days of its providers, and closes them into vectors
(detectors/behaviour/features.py, day_features.py); `build_all` does the same for a whole history,
the batch path of training, plus each provider's days across accounts (`ProviderDays`, which the
provider-wide stage keeps live). Events the seller approved are left out of every vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from detectors.behaviour.day_features import (
    ALL_ACCOUNTS,
    ProviderDays,
    close_day,
    day_add,
    new_day,
    new_entry,
    provider_day_key,
)
from detectors.behaviour.features import (
    FAMILIES,
    HOUR,
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
from pipeline.authorization import Grant, live_approval
from pipeline.event import Event


class AccountFeatures:
    """One account's principals and their open hours, over a JSON dict owned by the caller.

    `state` is `{"hour": last event hour, "p": {key: principal}, "d": {provider: day entry}}`; a
    principal is `{"w": open window, "known": {network: 1}, "mix": [usual family shares],
    "hours": n, "last": h}`. A provider's aggregate over its principals is one more such entry,
    keyed `provider|*` and marked `"agg": 1`; every provider event is added to both (one `add`
    each), and to the provider's open day (`{"w": open day, "hist": [...], "last": day}`).
    """

    __slots__ = ("state",)

    def __init__(self, state: dict[str, Any]) -> None:
        state.setdefault("hour", -1)
        state.setdefault("p", {})
        state.setdefault("d", {})
        self.state = state

    def observe(self, event: Event, live: list[Grant], approved: bool = False) -> list[Closed]:
        """Fold `event` (with its covering grants); return the hours (and days) its arrival
        closed. An `approved` event (it names a live approval covering it) moves the clock on
        but is counted nowhere."""
        hour = epoch_ms(event["occurred_at"]) // HOUR_MS
        closed = self.advance(hour) if hour > self.state["hour"] else []
        key = principal_key(event)
        if key is not None and not approved:
            off = is_off_hours(event["occurred_at"], live)
            self._entry(key, hour, False)
            add(self.state["p"][key], event, off)
            aggregate = provider_key(key)
            self._entry(aggregate, hour, True)
            add(self.state["p"][aggregate], event, off)
            provider = key.partition("|")[0]
            day = self.state["d"].get(provider)
            if day is None:
                day = self.state["d"][provider] = new_entry(self.state["hour"] // 24)
            if "w" not in day:  # a late event joins the open day, as it joins the open hour
                day["w"] = new_day(self.state["hour"] // 24)
            day_add(day["w"], event, off)
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
        """Move the account's clock to `hour`: close every window of an earlier hour, and every
        day of an earlier day."""
        self.state["hour"] = hour
        closed = []
        principals = self.state["p"]
        for key in list(principals):
            principal = principals[key]
            if "w" in principal and principal["w"]["h"] < hour:
                closed.append(close(key, principal))
            elif "w" not in principal and hour - principal["last"] > IDLE_HOURS:
                del principals[key]
        days = self.state["d"]
        for provider in list(days):
            entry = days[provider]
            if "w" in entry and entry["w"]["d"] < hour // 24:
                closed.append(close_day(provider_day_key(provider), entry, False))
            elif "w" not in entry and hour // 24 - entry["last"] > IDLE_HOURS // 24:
                del days[provider]
        return closed

    def open_vector(self, key: str) -> list[float] | None:
        """The vector of a principal's (or a `provider|*` aggregate's) still open hour (for early scoring)."""
        principal = self.state["p"].get(key)
        return vector(principal) if principal is not None and "w" in principal else None


def build(events: Iterable[Event]) -> Iterator[tuple[str, Closed]]:
    """(account, closed hour) for a history of normalized events, each account's in `seq` order
    (`build_all` without the days)."""
    for account, closed in build_all(events):
        if closed.span == HOUR:
            yield account, closed


def build_all(events: Iterable[Event]) -> Iterator[tuple[str, Closed]]:
    """(account, closed hour or day) for a history of normalized events, each account's in `seq`
    order; then each provider's days across accounts (account `*`), oldest first.

    The batch path (training from the warehouse): authorization is folded from the same events
    exactly as `detectors.run.observe` does, so covering grants (office hours) and approvals
    agree. A provider's days across accounts are counted whole, then closed as the stage closes
    them (`ProviderDays.flush`): the history need not be in event-time order across accounts.
    """
    from pipeline import authorization
    from pipeline.authorization import covering

    accounts: dict[str, tuple[dict[str, Any], AccountFeatures]] = {}
    providers: dict[str, ProviderDays] = {}
    for event in events:
        account = event["account_id"]
        found = accounts.get(account)
        if found is None:
            found = accounts[account] = (authorization.empty(), AccountFeatures({}))
        auth, features = found
        if event["action"] in authorization.AUTHORIZATION_ACTIONS:
            authorization.apply(auth, event)
        key = principal_key(event)
        live = covering(auth["grants"], event) if key is not None else []
        approved = key is not None and is_approved(auth, event)
        for closed in features.observe(event, live, approved):
            yield account, closed
        if key is not None:
            provider = key.partition("|")[0]
            days = providers.get(provider)
            if days is None:
                days = providers[provider] = ProviderDays(provider, {})
            days.clock(event)
            if not approved:
                days.add(event, is_off_hours(event["occurred_at"], live))
    for provider in sorted(providers):
        for closed in providers[provider].flush():
            yield ALL_ACCOUNTS, closed


def is_approved(auth: dict[str, Any], event: Event) -> bool:
    """The event names a live approval of the seller that covers it (action, resource, time)."""
    return "approval_id" in event and live_approval(auth, event) is not None
