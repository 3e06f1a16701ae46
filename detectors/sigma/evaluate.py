"""Sigma rules over a stream of events: detection matches and correlations, on event time.

`SigmaRules(ruleset).findings(event, state, ctx)` is called for every ledger event (the provider
stage calls it for all accounts, merged by event time); `state` is plain JSON. A detection rule
that generates alerts raises a finding on each matching event (key: rule and account). A
correlation keeps, per group (its `group-by` values) and per window of `timespan` aligned to the
epoch, the count of matching events (`event_count`), the distinct values of its field
(`value_count`, at most `MAX_VALUES`), or the first time each correlated rule matched
(`temporal`, `temporal_ordered`: each rule's first match in the listed order); once the window
meets the condition every further match in it is a finding of the same alert (key: rule and
group, window: the window's start). Windows older than the newest event by more than their
timespan plus `windows.LATENESS_MS` are dropped.

`matches(ruleset, events)` gives what a stream of events matched, in the same terms as the SQL
of detectors/sigma/sql.py: `(rule, event id)` for a detection rule, `(rule, group values, window
start)` for a correlation; the parity test and `partnerwatch rules test` compare them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.sigma import Correlation, RuleSet, field_value
from detectors.windows import LATENESS_MS, epoch_ms
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

MAX_VALUES = 1000
RECENT = 20
RESPONSE = (
    "Review the events the rule names (the alert's evidence) with `partnerwatch sql` and the rule's"
    " own description; ask the provider about any it cannot explain.",
    responses.PRESERVE,
)

Match = tuple[Any, ...]


class SigmaRules:
    """A loaded rule set, run over events; keeps no state of its own (it is in `state`)."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        #: detection rule -> the correlations that use it
        self.users: dict[str, list[Correlation]] = {}
        for correlation in ruleset.correlations.values():
            for name in correlation.rules:
                self.users.setdefault(name, []).append(correlation)

    def findings(self, event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
        found, _ = self.observe(event, state, ctx)
        return found

    def observe(
        self, event: Event, state: dict[str, Any], ctx: Context | None
    ) -> tuple[list[Finding], list[Match]]:
        found: list[Finding] = []
        matched: list[Match] = []
        hit_rules = [name for name, rule in self.ruleset.rules.items() if rule.matches(event)]
        for name in hit_rules:
            if self.ruleset.rules[name].generate:
                matched.append((name, event["event_id"]))
                if ctx is not None:
                    found.append(self._finding(ctx, event, name))
        for correlation in self.ruleset.correlations.values():
            mine = [r for r in correlation.rules if r in hit_rules]
            if not mine:
                continue  # an event counts once however many of the correlated rules it matches
            hit = _correlate(correlation, mine, event, state.setdefault(correlation.name, {}))
            if hit is not None:
                group, start, ids = hit
                matched.append((correlation.name, group, start))
                if ctx is not None:
                    found.append(self._correlated(ctx, event, correlation, group, start, ids))
        return found, matched

    def _finding(self, ctx: Context, event: Event, name: str) -> Finding:
        rule = self.ruleset.rules[name]
        return ctx.finding(
            event,
            detector=f"sigma_{name}",
            severity=rule.level,
            key=f"{name}|{event['account_id']}",
            title=rule.title,
            summary=(
                f"Sigma rule {name} ({rule.source.name}) matched {event['action']} by"
                f" {event['actor']['principal_id']} on account {event['account_id']} at"
                f" {event['occurred_at']} (event {event['event_id']})."
            ),
            response=RESPONSE,
        )

    def _correlated(
        self,
        ctx: Context,
        event: Event,
        c: Correlation,
        group: tuple[str, ...],
        start: str,
        ids: list[str],
    ) -> Finding:
        where = (
            ", ".join(f"{f}={v}" for f, v in zip(c.group_by, group, strict=True)) or "all events"
        )
        return ctx.finding(
            event,
            detector=f"sigma_{c.name}",
            severity=c.level,
            key=f"{c.name}|{'|'.join(group)}",
            window=start,
            title=c.title,
            summary=(
                f"Sigma correlation {c.name} ({c.kind} of {', '.join(c.rules)}, {c.source.name}) met"
                f" its condition for {where} in the {c.seconds} s window from {start}; latest"
                f" {event['action']} on account {event['account_id']} (event {event['event_id']})."
            ),
            response=RESPONSE,
            related=tuple(i for i in ids if i != event["event_id"]),
        )


def _correlate(
    c: Correlation, rules: list[str], event: Event, windows: dict[str, Any]
) -> tuple[tuple[str, ...], str, list[str]] | None:
    """Fold one event matching `rules` (of the correlated ones) into its group's window; the
    match when the window meets (or already met) the condition."""
    now = epoch_ms(event["occurred_at"])
    size = c.seconds * 1000
    newest = max(now, windows.get("#newest", now))
    windows["#newest"] = newest
    for key in [
        k for k, w in windows.items() if k != "#newest" and w["b"] + size < newest - LATENESS_MS
    ]:
        del windows[key]
    start = now // size * size
    if start + size < newest - LATENESS_MS:
        return None  # too late for its window
    group = tuple(field_value(event, f) for f in c.group_by)
    key = "\x1f".join((*group, str(start)))
    w = windows.setdefault(key, {"b": start})
    w["ids"] = [*w.get("ids", [])[-(RECENT - 1) :], event["event_id"]]
    if c.kind == "event_count":
        w["n"] = w.get("n", 0) + 1
        met = w["n"] >= c.threshold
    elif c.kind == "value_count":
        values = w.setdefault("v", [])
        value = field_value(event, c.value_field or "")
        if value not in values and len(values) < MAX_VALUES:
            values.append(value)
        met = len(values) >= c.threshold
    else:
        first = w.setdefault("r", {})
        for rule in rules:
            first[rule] = min(first.get(rule, now), now)
        met = all(r in first for r in c.rules)
        if met and c.kind == "temporal_ordered":
            times = [first[r] for r in c.rules]
            met = times == sorted(times)
    if not met:
        return None
    return group, format_ms(start), list(w["ids"])


def matches(ruleset: RuleSet, events: Iterable[Event]) -> set[Match]:
    """Everything `events` (in this order) matched: detection rules by event, correlations by
    group and window (a correlation counted once per group and window)."""
    rules = SigmaRules(ruleset)
    state: dict[str, Any] = {}
    out: set[Match] = set()
    for event in events:
        _, hit = rules.observe(event, state, None)
        out.update(hit)
    return out
