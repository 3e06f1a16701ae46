"""One provider cutting prices on many seller accounts within an hour, each cut under the limit.

Why: price slashing is how a partner on its way out (or a competitor holding its credential)
hurts sellers, and the per-account rule (price_change_over_limit) only sees a move beyond the
grant's `max_price_change_pct`. A cut of 20% on each of several sellers' listings, by one agency,
within an hour, passes every per-account check.

What counts: `listing.price_change` events by a provider (any principal: the cuts may be spread
over its staff) that lower a price by at least `price_cut_min_pct` (detectors/prices.py, exact
decimals), across accounts, within `price_cut_window_minutes` of event time (the densest such
window around the cut, so a cut arriving up to `windows.LATENESS_MS` late still counts). A cut the
seller approved (the event names a live `approval_id` of its account, pipeline/authorization.py)
does not count. The rule fires when the distinct accounts cut in the window reach
`price_cut_min_accounts`, and `price_cut_baseline_factor` x the provider's usual busy hour of
accounts cut once it has history (detectors/rates.py: the second-highest of its earlier hours
with cuts, after a day; an hour that fired is not learned), so a repricing agency that routinely
cuts across its sellers sets its own bar.

One alert per episode (window: its first cut); the evidence names the cuts, the first on each
account first, up to `RECENT`. State per provider: the window's cuts (bounded) and the hourly
history of accounts cut.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import rates, responses
from detectors.prices import price_move
from detectors.windows import LATENESS_MS, densest
from pipeline.alert import Finding
from pipeline.authorization import live_approval
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "cross_account_price_cuts"
SEVERITY = "high"
MAX_CUTS = 200
RECENT = 20
RESPONSE = (
    "Check the named listings' prices on every account in the evidence and restore them (Manage"
    " Pricing, or the last flat-file export); ask the provider which repricing job made the cuts.",
    responses.REVOKE,
    responses.CONFIRM,
    responses.PRESERVE,
)


#: The actions this rule looks at, as prefixes (detectors/provider_wide/run.py calls it for no
#: other action).
ACTIONS = ("listing.price_change",)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if event["action"] != "listing.price_change" or actor["type"] != "provider":
        return []
    move = price_move(event)
    cfg = ctx.config
    if move is None or move[1] >= move[0] or move[2] < cfg.price_cut_min_pct:
        return []
    if event.get("approval_id") and live_approval(ctx.auth, event) is not None:
        return []  # the seller approved this cut
    now = ctx.epoch_ms(event["occurred_at"])
    size = max(1, cfg.price_cut_window_minutes) * 60_000
    clock = max(now, state.get("clock", now))
    state["clock"] = clock
    if now <= clock - size - LATENESS_MS:
        return []  # too late to count
    kept = [c for c in state.get("cuts", []) if c[0] > clock - size - LATENESS_MS]
    kept.append([now, event["account_id"], event["event_id"]])
    kept.sort()
    state["cuts"] = kept = kept[-MAX_CUTS:]
    cuts = densest(kept, now, size)
    accounts = sorted({c[1] for c in cuts})
    hour = _hour(state, event["account_id"], now // 3_600_000)
    usual = rates.usual_hour(hour)
    need = max(cfg.price_cut_min_accounts, cfg.price_cut_baseline_factor * (usual or 0))
    if len(accounts) < need:
        state.pop("episode", None)
        return []
    hour["fired"] = True
    start = state.get("episode") or format_ms(cuts[0][0])
    state["episode"] = start
    old, new, pct = move
    minutes = size // 60_000
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=actor["provider_id"],
            window=start,
            title=f"Provider {actor['provider_id']} cut prices on {len(accounts)} accounts within {minutes} minutes",
            summary=(
                f"Provider {actor['provider_id']} lowered prices by at least"
                f" {cfg.price_cut_min_pct:g}% on {len(accounts)} seller accounts"
                f" ({', '.join(accounts)}) within {minutes} minutes ({len(cuts)} cuts; latest"
                f" {event.get('resource', {}).get('id', '?')} on {event['account_id']} from {old} to"
                f" {new}, -{pct:.1f}%, by {actor['principal_id']}, event {event['event_id']}). The"
                f" threshold is {need:g} accounts; the cuts began at {start}."
            ),
            response=RESPONSE,
            related=_evidence(cuts, event["event_id"]),
        )
    ]


def _hour(state: dict[str, Any], account: str, hour: int) -> dict[str, Any]:
    """The provider's clock hour of cuts (`a`: its accounts), in the record shape rates.usual_hour
    reads (`n` per completed hour in `hist`); a late cut of a closed hour is not learned."""
    mine: dict[str, Any] = state.setdefault("hr", {"h": hour, "since": hour, "a": []})
    if hour > mine["h"]:
        if mine["a"] and "fired" not in mine:
            mine["hist"] = [*mine.get("hist", []), len(mine["a"])][-rates.HISTORY :]
        mine["h"], mine["a"] = hour, []
        mine.pop("fired", None)
    if hour == mine["h"] and account not in mine["a"]:
        mine["a"].append(account)
    return mine


def _evidence(cuts: list[list[Any]], event_id: str) -> tuple[str, ...]:
    firsts: dict[str, str] = {}
    for _, account, cut in cuts:
        firsts.setdefault(account, cut)
    chosen = list(firsts.values())[:RECENT]
    for _, _, cut in cuts[::-1]:  # not reversed(): mypyc 2.4 fails on it here
        if len(chosen) >= RECENT:
            break
        if cut not in chosen:
            chosen.append(cut)
    order = [c[2] for c in cuts]
    return tuple(c for c in sorted(chosen, key=order.index) if c != event_id)
