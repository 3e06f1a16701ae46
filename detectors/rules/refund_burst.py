"""A burst of refunds on an account: far more than the account's usual window, and many.

Refunds are a way to move the seller's money to buyers an attacker controls, and a partner with
order access can issue them quickly. The rule counts `funds.refund` events on the account in a
window of `refund_window_minutes` that slides in sixths (so a burst split across a clock boundary
is still seen whole) and fires while the count is both >= `refund_min` and >=
`refund_baseline_factor` x the account's baseline: the mean refund count of its previous
completed (clock-aligned) windows that had refunds, over at most `HISTORY` windows, leaving out
windows that overlap the sliding window or held a burst (a burst learned as usual would hide the
next one). An account with no history yet is held to `refund_min` alone.

Deliberately ignored: refunds by the `amazon` actor (A-to-z claims, FBA returns processing: not
delegated access), and refunds whose event time falls before the current sliding window (a late
event neither counts nor rewrites history). Attempts count whatever their outcome. State: the
sliding window's six slices (count, sums, and the ids of their latest refunds: the alert names the
window's latest `RECENT` refunds as evidence), the current aligned window's count and the bounded
history.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from detectors.responses import CASE, PRESERVE, REVOKE, ROTATE
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "refund_burst"
SEVERITY = "high"
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = ("funds.refund",)
#: The sliding window moves in this many steps.
SLICES = 6
#: Completed windows (with refunds) the baseline averages over.
HISTORY = 24
#: The latest refunds of the sliding window named as the burst's evidence (with the one that fired).
RECENT = 20
RESPONSE = (
    "Review the refunds in the window (Orders > Manage Refunds): who issued them, to which orders"
    " and buyers; contact Seller Support to stop refunds that were not yours.",
    REVOKE,
    ROTATE,
    CASE,
    PRESERVE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    if event["action"] != "funds.refund" or event["actor"]["type"] == "amazon":
        return []
    window_ms = max(1, ctx.config.refund_window_minutes) * 60_000
    slice_ms = max(1, window_ms // SLICES)
    now = ctx.epoch_ms(event["occurred_at"])
    here = now // slice_ms
    newest = max(here, state.get("newest", here))
    if here <= newest - SLICES:
        return []  # older than the sliding window: too late to count

    # The clock-aligned window feeds the baseline; its count moves to history once it completes,
    # unless it held a burst (a burst learned as usual would hide the next one).
    win = now // window_ms
    if "win" not in state or win > state["win"]:
        if state.get("n", 0) > 0 and not state.get("burst"):
            state["hist"] = [*state.get("hist", []), [state["win"], state["n"]]][-HISTORY:]
        state["win"], state["n"] = win, 0
        state.pop("burst", None)
    if win == state["win"]:
        state["n"] += 1

    slices: dict[str, Any] = {
        k: v for k, v in state.get("slices", {}).items() if int(k) > newest - SLICES
    }
    piece = slices.setdefault(str(here), {"n": 0, "sum": {}})
    piece["n"] += 1
    piece["ids"] = [*piece.get("ids", [])[-(RECENT - 1) :], event["event_id"]]
    amount = event.get("amount")
    if amount is not None:
        cur = amount["currency"]
        piece["sum"][cur] = str(Decimal(piece["sum"].get(cur, "0")) + Decimal(amount["value"]))
    state["slices"] = slices
    state["newest"] = newest

    # The baseline: windows that ended before the sliding window began (none of this burst).
    start = (newest - SLICES + 1) * slice_ms
    before = [h for h in state.get("hist", []) if (h[0] + 1) * window_ms <= start]
    history = [n for _, n in before]
    count = sum(s["n"] for s in slices.values())
    baseline = sum(history) / len(history) if history else 0.0
    cfg = ctx.config
    if count < cfg.refund_min or count < cfg.refund_baseline_factor * baseline:
        return []
    state["burst"] = True
    if before:
        state["hist"] = before
    else:
        state.pop("hist", None)
    totals: dict[str, Decimal] = {}
    for s in slices.values():
        for cur, value in s["sum"].items():
            totals[cur] = totals.get(cur, Decimal(0)) + Decimal(value)
    window_ids = [
        i for _, s in sorted(slices.items(), key=lambda kv: int(kv[0])) for i in s.get("ids", ())
    ]
    money = ", ".join(f"{v} {c}" for c, v in sorted(totals.items())) or "no amounts"
    usual = (
        f"the account's usual window has {baseline:.1f} (mean of {len(history)} previous windows)"
        if history
        else "the account has no refund history yet"
    )
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=event["account_id"],
            title=f"Refund burst: {count} refunds in {cfg.refund_window_minutes} min",
            summary=(
                f"Account {event['account_id']} issued {count} refunds ({money}) in the"
                f" {cfg.refund_window_minutes} minutes up to {event['occurred_at']}; {usual}."
                f" Thresholds: at least {cfg.refund_min} and {cfg.refund_baseline_factor:g}x the"
                f" usual window. Latest refund {event['event_id']} by {_who(event['actor'])}."
            ),
            response=RESPONSE,
            related=tuple(i for i in window_ids[-RECENT:] if i != event["event_id"]),
        )
    ]


def _who(actor: dict[str, str]) -> str:
    if actor["type"] == "provider":
        return f"provider {actor['provider_id']} ({actor['principal_id']})"
    return f"{actor['type']} {actor['principal_id']}"
