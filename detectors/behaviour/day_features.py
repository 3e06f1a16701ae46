"""Day-level behaviour vectors of providers: the slow trends an hour cannot show.

An hourly vector (detectors/behaviour/features.py) sees one principal's -- or one provider's --
hour. A price erosion spread over a provider's principals and over days, or report downloads kept
under every hourly bar for days, leaves each hour inside the training range; summed over a day,
and set against the provider's own usual day, it stands out. Two kinds of day vector:
- `provider_day`: one provider's principals on one account, over one UTC day (key `provider|*`,
  kept with the account's hours in the detector's account state);
- `provider_accounts_day`: one provider over every account it worked that day (key `*|provider|*`,
  account `*`), kept by the provider-wide stage (detectors/provider_wide/run.py), which sees
  every account.

Features (`DAY_FEATURES`): volume against the provider's usual day (the median of its last
`HISTORY_DAYS` closed days; neutral until it has `MIN_HISTORY`; floored at 1, so a quiet day is not
an anomaly), price moves (count of cuts, a sign test of cuts against rises, the cumulative signed
change and its t-like ratio), sensitive report downloads (detectors/reports.py) and their ratio to
usual, distinct principals and accounts, off-hours and failed shares, and the kind indicator.
A change the seller approved (the event names a live approval that covers it:
`pipeline.authorization.live_approval`) is not counted: the callers leave approved events out of
every vector, hourly and daily. The state is plain JSON, built on event time only.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from detectors.behaviour.features import DAY, HOUR_MS, MAX_DISTINCT, Closed
from detectors.prices import price_move
from detectors.reports import sensitive
from detectors.windows import LATENESS_MS, epoch_ms
from pipeline.event import Event

DAY_MS = 24 * HOUR_MS
#: The two kinds of day vector (the last feature, `across_accounts`, tells them apart).
DAY_KINDS: tuple[str, ...] = ("provider_day", "provider_accounts_day")
#: The account part of a provider-across-accounts vector's alert key (`*|provider|*`).
ALL_ACCOUNTS = "*"
DAY_FEATURES: tuple[str, ...] = (
    "events_ratio",
    "price_changes",
    "price_cuts",
    "price_cuts_ratio",
    "price_cut_excess",
    "price_change_sum_pct",
    "price_change_t",
    "sensitive_reports",
    "sensitive_reports_ratio",
    "principals",
    "accounts",
    "off_hours_share",
    "failed_share",
    "across_accounts",
)
DAY_DESCRIPTIONS: dict[str, str] = {
    "events_ratio": "events of the day against its usual day (x, at least 1)",
    "price_changes": "price changes in the day",
    "price_cuts": "price cuts (downward moves) in the day",
    "price_cuts_ratio": "price cuts against its usual day (x, at least 1)",
    "price_cut_excess": "excess of cuts over rises ((cuts - rises) / sqrt(moves))",
    "price_change_sum_pct": "cumulative signed price change of the day (sum of %)",
    "price_change_t": "signed price change against its spread (sum / sqrt(sum of squares))",
    "sensitive_reports": "sensitive report downloads in the day",
    "sensitive_reports_ratio": "sensitive report downloads against its usual day (x, at least 1)",
    "principals": "distinct principals active",
    "accounts": "distinct accounts touched",
    "off_hours_share": "share of the day's events outside office hours",
    "failed_share": "share of failed or denied calls",
    "across_accounts": "1 for a provider over all its accounts, 0 for one account",
}
#: Features where only a high value can be an anomaly: a quiet day (fewer cuts, downloads,
#: principals or accounts than usual) is not one. The day forest sees them raised to their kind's
#: training median (`floors`, detectors/behaviour/training.py), and so does its range check.
DAY_ONE_SIDED: frozenset[str] = frozenset(
    {
        "events_ratio",
        "price_changes",
        "price_cuts",
        "price_cuts_ratio",
        "sensitive_reports",
        "sensitive_reports_ratio",
        "principals",
        "accounts",
        "off_hours_share",
        "failed_share",
    }
)
#: Which of the day's events back a deviating feature (evidence kinds kept per day).
DAY_EVIDENCE_OF: dict[str, str] = {
    "price_changes": "price",
    "price_cuts": "cut",
    "price_cuts_ratio": "cut",
    "price_cut_excess": "cut",
    "price_change_sum_pct": "cut",
    "price_change_t": "cut",
    "sensitive_reports": "report",
    "sensitive_reports_ratio": "report",
    "off_hours_share": "off",
    "failed_share": "bad",
}
#: Evidence kept per day and kind: the first such event of each hour, so an alert names events
#: from across the day (a day's trend is in no single event).
DAY_EVIDENCE = 24
#: Closed days remembered per provider (the usual day is their median) and needed before ratios
#: speak (a first, partial day does not make the next one look busy).
HISTORY_DAYS = 7
MIN_HISTORY = 3
#: Pseudo-counts of the ratios (events, price moves, reports), of the sign test and of the
#: t-like ratio (in %^2), and of the shares.
RATIO_PRIOR = {"n": 20.0, "cut": 10.0, "rep": 5.0}
SIGN_PRIOR = 4.0
T_PRIOR = 100.0
SHARE_PRIOR = 5.0
#: A provider's day across accounts closes once an event of the provider is this far past its
#: end (in the stage, events arrive in rough event-time order): later events of it are dropped.
GRACE_MS = LATENESS_MS


def new_day(day: int) -> dict[str, Any]:
    return {
        "d": day,
        "n": 0,
        "pc": 0,
        "cut": 0,
        "rise": 0,
        "ps": 0.0,
        "pss": 0.0,
        "rep": 0,
        "off": 0,
        "bad": 0,
        "prin": {},
        "acct": {},
        "ev": {},
        "evh": {},
    }


def _evidence(w: dict[str, Any], kind: str, event_id: str, hour: int) -> None:
    """Keep `event_id` when it is the first event of its kind in its hour (`DAY_EVIDENCE` at most)."""
    if w["evh"].get(kind) != hour:
        ids = w["ev"].setdefault(kind, [])
        if len(ids) < DAY_EVIDENCE:
            ids.append(event_id)
            w["evh"][kind] = hour


def day_add(w: dict[str, Any], event: Event, off_hours: bool) -> None:
    """Count a provider's (not approved) event into its open day `w`."""
    w["n"] += 1
    event_id = event["event_id"]
    hour = epoch_ms(event["occurred_at"]) // HOUR_MS
    _evidence(w, "all", event_id, hour)
    actor = event["actor"]
    for name, value in (("prin", actor["principal_id"]), ("acct", event["account_id"])):
        seen = w[name]
        if value not in seen and len(seen) < MAX_DISTINCT:
            seen[value] = 1
    action = event["action"]
    if event["outcome"] != "success":
        w["bad"] += 1
        _evidence(w, "bad", event_id, hour)
    if off_hours:
        w["off"] += 1
        _evidence(w, "off", event_id, hour)
    if action == "report.download":
        if event["outcome"] == "success" and sensitive(
            str((event.get("resource") or {}).get("id", ""))
        ):
            w["rep"] += 1
            _evidence(w, "report", event_id, hour)
    elif action == "listing.price_change":
        move = price_move(event)
        if move is not None and move[0] != move[1]:
            pct = float(move[2])
            signed = -pct if move[1] < move[0] else pct
            w["pc"] += 1
            w["ps"] += signed
            w["pss"] += pct * pct
            _evidence(w, "price", event_id, hour)
            if signed < 0:
                w["cut"] += 1
                _evidence(w, "cut", event_id, hour)
            else:
                w["rise"] += 1


def _ratio(value: float, usual: float | None, prior: float) -> float:
    return 1.0 if usual is None else max(1.0, (value + prior) / (usual + prior))


def day_vector(entry: dict[str, Any], across_accounts: bool) -> list[float]:
    """The open day's vector, against the provider's usual day (the median of its history)."""
    w = entry["w"]
    hist = entry["hist"]
    usual: list[float | None] = (
        [statistics.median(h[i] for h in hist) for i in range(3)]
        if len(hist) >= MIN_HISTORY
        else [None, None, None]
    )
    moves = w["cut"] + w["rise"]
    return [
        _ratio(w["n"], usual[0], RATIO_PRIOR["n"]),
        float(w["pc"]),
        float(w["cut"]),
        _ratio(w["cut"], usual[1], RATIO_PRIOR["cut"]),
        (w["cut"] - w["rise"]) / math.sqrt(moves + SIGN_PRIOR),
        w["ps"],
        w["ps"] / math.sqrt(w["pss"] + T_PRIOR),
        float(w["rep"]),
        _ratio(w["rep"], usual[2], RATIO_PRIOR["rep"]),
        float(len(w["prin"])),
        float(len(w["acct"])),
        w["off"] / (w["n"] + SHARE_PRIOR),
        w["bad"] / (w["n"] + SHARE_PRIOR),
        1.0 if across_accounts else 0.0,
    ]


def close_day(key: str, entry: dict[str, Any], across_accounts: bool) -> Closed:
    """Close the entry's open day: its vector, then the day joins the provider's history."""
    w = entry["w"]
    closed = Closed(key, w["d"] * 24, day_vector(entry, across_accounts), w["ev"], span=DAY)
    del entry["w"]
    entry["hist"] = [*entry["hist"], [w["n"], w["cut"], w["rep"]]][-HISTORY_DAYS:]
    entry["last"] = w["d"]
    return closed


def new_entry(day: int) -> dict[str, Any]:
    return {"hist": [], "last": day}


def provider_day_key(provider: str) -> str:
    """The key of a provider's day vector on one account (the hourly provider-level key)."""
    return f"{provider}|*"


def day_of(event: Event) -> int:
    return epoch_ms(event["occurred_at"]) // DAY_MS


class ProviderDays:
    """One provider's days over every account, over a JSON dict owned by the caller.

    `state` is `{"w": {day: open window}, "hist": [...], "last": day, "clock": ms, "late": n}`.
    Events are counted into the window of their own UTC day; a day closes, oldest first, once an
    event of the provider is `GRACE_MS` past the day's end (`observe`), or when a batch of
    history has been folded whole (`flush`): the same days either way, as long as no event
    arrives more than `GRACE_MS` late (such an event is counted in `late` and dropped).
    """

    __slots__ = ("key", "state")

    def __init__(self, provider: str, state: dict[str, Any]) -> None:
        state.setdefault("w", {})
        state.setdefault("hist", [])
        state.setdefault("clock", 0)
        self.key = provider_day_key(provider)
        self.state = state

    def add(self, event: Event, off_hours: bool) -> None:
        """Count the event into its day (without closing anything)."""
        at = epoch_ms(event["occurred_at"])
        day = at // DAY_MS
        if day <= self.state.get("last", day - 1):
            self.state["late"] = self.state.get("late", 0) + 1
            return
        windows = self.state["w"]
        w = windows.get(str(day))
        if w is None:
            w = windows[str(day)] = new_day(day)
        day_add(w, event, off_hours)

    def clock(self, event: Event) -> None:
        """Move the provider's clock on to the event's time (any event of the provider's)."""
        self.state["clock"] = max(self.state["clock"], epoch_ms(event["occurred_at"]))

    def tick(self, event: Event) -> list[Closed]:
        """Move the clock on to the event's time; close the days now past their grace."""
        self.clock(event)
        return self.flush()

    def flush(self) -> list[Closed]:
        """Close the open days that ended `GRACE_MS` before the provider's newest event, oldest
        first."""
        now = self.state["clock"]
        closed = []
        for day in sorted(int(d) for d in self.state["w"]):
            if (day + 1) * DAY_MS + GRACE_MS > now:
                break
            entry = {"w": self.state["w"].pop(str(day)), "hist": self.state["hist"]}
            closed.append(close_day(self.key, entry, True))
            self.state["hist"], self.state["last"] = entry["hist"], entry["last"]
        return closed
