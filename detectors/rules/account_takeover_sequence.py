"""A contact or bank-account change followed soon by a payout: the account-takeover sequence.

The classic seller-account takeover redirects money in two steps: first change where Amazon
sends mail or money (`account.contact_change`, `funds.bank_account_change`), then pull it out
(`funds.disbursement_request`) or change when it is paid (`funds.transfer_schedule_change`).
Either step alone is routine; both on one account within `takeover_window_hours` of event time
is the pattern. It fires on the payout-side event, whoever the actor is (a hijacked seller login
looks like the seller), and names the latest change before it (event id, time, actor) in the
summary, with up to three earlier ones; payouts after the same change fold into one alert. The
alert's evidence names every step: the changes in the window, oldest first, then the payouts.

Only successful changes count (a rejected bank change redirected nothing); payout-side events
count whatever their outcome (an attempt is the signal). Payouts before the change, or more than
the window after it, are ignored. State: the recent successful changes, pruned to the window and
capped, plus the newest event time seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors.responses import TAKEOVER
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "account_takeover_sequence"
SEVERITY = "critical"

CHANGES = frozenset({"account.contact_change", "funds.bank_account_change"})
PAYOUTS = frozenset({"funds.disbursement_request", "funds.transfer_schedule_change"})
#: At most this many changes are remembered per account (the newest).
MAX_CHANGES = 16
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = tuple(sorted(CHANGES | PAYOUTS))


def _who(actor: dict[str, str]) -> str:
    if actor["type"] == "provider":
        return f"provider {actor['provider_id']} ({actor['principal_id']})"
    return f"{actor['type']} {actor['principal_id']}"


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    action = event["action"]
    if action not in CHANGES and action not in PAYOUTS:
        return []
    window_ms = ctx.config.takeover_window_hours * 3_600_000
    now = ctx.epoch_ms(event["occurred_at"])
    newest = max(now, state.get("newest", now))
    changes = [c for c in state.get("changes", []) if c["ms"] >= newest - window_ms]

    findings = []
    if action in PAYOUTS:
        earlier = [
            c
            for c in changes
            if c["ms"] <= now and now - c["ms"] <= window_ms and c["id"] != event["event_id"]
        ]
        if earlier:
            findings.append(_finding(event, earlier, ctx))
    elif event["outcome"] == "success":
        changes.append(
            {
                "id": event["event_id"],
                "at": event["occurred_at"],
                "ms": now,
                "action": action,
                "who": _who(event["actor"]),
            }
        )
        changes.sort(key=lambda c: c["ms"])
        changes = changes[-MAX_CHANGES:]

    if changes:
        state["newest"], state["changes"] = newest, changes
    else:
        state.clear()  # nothing left to pair a payout with
    return findings


def _finding(event: Event, earlier: list[dict[str, Any]], ctx: Context) -> Finding:
    first = earlier[-1]  # the latest change before the payout anchors the incident
    others = earlier[:-1]
    also = ""
    if others:
        also = "; before it " + "; ".join(
            f"{c['action']} {c['id']} at {c['at']} by {c['who']}" for c in others[-3:]
        )
    amount = event.get("amount")
    money = f" of {amount['value']} {amount['currency']}" if amount else ""
    minutes = (ctx.epoch_ms(event["occurred_at"]) - first["ms"]) // 60_000
    after = f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        # One alert per change: every payout after the same change folds into it.
        key=f"{event['account_id']}|{first['id']}",
        window=first["at"],
        title=f"{first['action']} followed by {event['action']} {after} later",
        summary=(
            f"{event['action']}{money} (event {event['event_id']}, outcome {event['outcome']}) by"
            f" {_who(event['actor'])} at {event['occurred_at']} on account {event['account_id']}"
            f" came {after} after {first['action']} (event {first['id']}) at {first['at']} by"
            f" {first['who']}{also}. A change of contact or bank details followed by a payout"
            f" within {ctx.config.takeover_window_hours} h is the account-takeover pattern."
        ),
        response=TAKEOVER,
        # Every step: the changes in the window (oldest first), then the payout that completed it.
        related=tuple(c["id"] for c in earlier),
    )
