"""A change Amazon observed that no gateway call made: someone went around the gateway.

The gateway (sources/gateway) records every call providers make through it; Amazon's
notifications and PartnerWatch's polls (actor type `amazon`, sources/notifications,
sources/polling) say what changed on the account, never who. An observed change with no matching
gateway call was made around the gateway: provider staff in Seller Central, a provider app the
seller authorized directly, or someone holding the seller app's own credentials.

A matching call is a successful gateway listing write on the same SKU, site and attribute
(`price`, `quantity`, `status`, or the attribute's name) within `outside_gateway_window_minutes`
before the observation (or `outside_gateway_skew_minutes` after it: clocks differ). For price and
quantity the values must agree too: the observed value is the one the call set, or the one it
replaced (Amazon applies an ACCEPTED patch later, so an observation may still show the old
value). An observation is compared with the value known at its own event time, so late,
repeated and out-of-order notifications neither hide a change nor invent one; an unchanged value
or a first sighting (nothing known before) is no change. Quantity decreases are sales
(`outside_gateway_ignore_quantity_decrease`); status changes need a call only when the listing
was deleted or newly created (Amazon moves BUYABLE/DISCOVERABLE itself).

Submission ids are correlated where Amazon gives them: a finished feed or report of the seller's
app whose id the gateway never handed out (or, for reports, whose type no gateway schedule
covers), or an on-demand payout with no gateway payout request on that site, was made with the
seller app's credentials outside the gateway. A bank account change found by polling always
fires: no SP-API call can make one.

Gateway calls are remembered `outside_gateway_late_hours` (24) of event time, so a notification
that long late is still matched. `outside_gateway_grace_minutes` (default 0) holds an unexplained observation until an event of
the account is that much later, for gateway events that reach the ledger late. Observations that
name only an ASIN are reconciled once an event has tied that ASIN to a SKU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import reconciliation as rc
from detectors import responses
from detectors.reconciliation import GATEWAY, OBSERVERS
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "change_outside_gateway"
SEVERITY = "high"
RESPONSE = (
    "Check who changed it: the Seller Central users with access to this area, and the apps authorized in Manage Your Apps.",
    "Revoke every provider app authorized directly and every Seller Central login that should go through the gateway.",
    responses.ROTATE,
    responses.PRESERVE,
)
VALUED = {"listing.price_observed": "price", "inventory.quantity_observed": "quantity"}


#: The configuration last seen and its windows (`_windows`).
_last: tuple[DetectionConfig, tuple[int, int, int, int, int]] | None = None


def _windows(cfg: DetectionConfig) -> tuple[int, int, int, int, int]:
    """The configuration's windows in milliseconds: the observation window, the skew, the grace,
    how long calls are kept, how long ids are kept. Read from a configuration (a frozen
    pydantic model, whose attributes cost a few hundred instructions each) once, not per event:
    remembered for the last configuration seen, by identity."""
    global _last
    last = _last
    if last is not None and last[0] is cfg:
        return last[1]
    window = cfg.outside_gateway_window_minutes * 60_000
    skew = cfg.outside_gateway_skew_minutes * 60_000
    found = (
        window,
        skew,
        cfg.outside_gateway_grace_minutes * 60_000,
        max(2 * window + skew, cfg.outside_gateway_late_hours * 3_600_000),
        cfg.outside_gateway_id_days * 86_400_000,
    )
    _last = (cfg, found)
    return found


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    cfg = ctx.config
    at = ctx.epoch_ms(event["occurred_at"])
    newest = max(at, state.get("newest", at))
    state["newest"] = newest
    window, skew, grace, keep, keep_ids = _windows(cfg)
    found: list[dict[str, Any]] = []
    source = rc.adapter(event)
    if source == GATEWAY:
        _learn_call(event, state, at)
    elif source in OBSERVERS and event["actor"]["type"] == "amazon":
        found = _judge(event, state, at, window, skew, cfg.outside_gateway_ignore_quantity_decrease)
    findings = []
    for item in found:
        if grace and at + grace > newest and not item.get("always"):
            state.setdefault("pending", []).append(item)
        else:
            findings.append(_finding(event, item, ctx))
    for item in _due(state, newest, grace, window, skew):
        findings.append(_finding(event, item, ctx))
    rc.prune(state, newest, keep, keep_ids)
    return findings


def _learn_call(event: Event, state: dict[str, Any], at: int) -> None:
    key = rc.listing_key(event, state)
    if key is not None:
        for attribute, new, old in rc.gateway_writes(event):
            rc.remember_call(state, rc.attribute_key(key, attribute), at, new, old, event)
    if event["outcome"] != "success":
        return
    submission = rc.origin(event, "submission_id")
    if isinstance(submission, str):
        state.setdefault("ids", {})[submission] = at
    if event["action"] == "report.schedule":
        state.setdefault("schedules", {})[event.get("resource", {}).get("id", "?")] = at
    if event["action"] == "funds.disbursement_request":
        state.setdefault("payouts", {}).setdefault(event.get("marketplace", "?"), []).append(
            [at, submission]
        )


def _judge(
    event: Event, state: dict[str, Any], at: int, window: int, skew: int, ignore_decrease: bool
) -> list[dict[str, Any]]:
    action = event["action"]
    base = {
        "event_id": event["event_id"],
        "at": at,
        "occurred_at": event["occurred_at"],
        "what": _observer(event),
    }
    if action == "funds.bank_account_change":
        return [
            {
                **base,
                "kind": "bank",
                "key": "bank",
                "always": True,
                "severity": "critical",
                "desc": f"a bank account of the seller changed on {event.get('marketplace', '?')} (resource {event.get('resource', {}).get('id', '?')})",
            }
        ]
    if action in ("feed.processing_finished", "report.processing_finished"):
        kind = action.split(".")[0]
        ident = rc.origin(event, f"{kind}_id")
        known = ident in state.get("ids", {}) or (
            kind == "report" and event.get("resource", {}).get("id") in state.get("schedules", {})
        )
        if known or not isinstance(ident, str):
            return []
        return [
            {
                **base,
                "kind": kind,
                "key": f"{kind}|{ident}",
                "severity": "critical",
                "desc": f"{kind} {ident} ({event.get('resource', {}).get('id', '?')}) of the seller's own app was processed, and no gateway call created it",
            }
        ]
    if action == "funds.payout_observed":
        if rc.origin(event, "payout_type") != "ON_DEMAND":
            return []
        ident = event.get("resource", {}).get("id")
        asked = [
            p
            for p in state.get("payouts", {}).get(event.get("marketplace", "?"), [])
            if at - window <= p[0] <= at + skew or p[1] == ident
        ]
        if asked or ident in state.get("ids", {}):
            return []
        return [
            {
                **base,
                "kind": "payout",
                "key": f"payout|{ident}",
                "severity": "critical",
                "desc": f"an on-demand payout {ident} on {event.get('marketplace', '?')} was made, and no gateway call asked for one",
            }
        ]
    key = rc.listing_key(event, state)
    if key is None:
        return []
    out = []
    for attribute, new, old, needs_call in _observed(event, action):
        full = rc.attribute_key(key, attribute)
        known = rc.value(attribute, old) if old is not None else rc.value_at(state, full, at)
        new = rc.value(attribute, new)
        if new is not None and attribute in ("price", "quantity"):
            rc.remember_value(state, full, at, new, "amazon")
        if attribute == "status":
            if new is not None:
                rc.remember_value(state, full, at, new, "amazon")
            if not needs_call or known == new:
                continue  # Amazon moves BUYABLE/DISCOVERABLE itself; a known state again is no change
        elif not needs_call:
            if new is None or known is None or known == new:
                continue
            if attribute == "quantity" and ignore_decrease and _lower(new, known):
                continue
        near = rc.calls_near(state, full, at, window, skew)
        if _explained(near, attribute, new, ignore_decrease):
            continue
        if _already(state, full, new, at, window):
            continue
        out.append(
            {
                **base,
                "kind": "listing",
                "key": full,
                "attribute": attribute,
                "old": known,
                "new": new,
                "severity": SEVERITY,
                "nearest": rc.nearest_call(state, full, at),
            }
        )
    return out


def _observed(event: Event, action: str) -> list[tuple[str, Any, Any, bool]]:
    """(attribute, new, old given by the observer, needs a call whatever the values)."""
    changes = event.get("changes", [])
    if action in VALUED:
        attribute = VALUED[action]
        return [
            (attribute, c.get("new"), c.get("old"), False)
            for c in changes
            if c["field"] == attribute
        ]
    if action == "listing.status_change":
        out = []
        for c in changes:
            if c["field"] == "status":
                new = str(c.get("new") or "")
                created = rc.origin(event, "created") is True
                out.append(("status", new or None, c.get("old"), "DELETED" in new or created))
        return out
    if action == "listing.attributes_observed":
        return [(c["field"], c.get("new"), c.get("old"), True) for c in changes]
    return []


def _explained(near: list[list[Any]], attribute: str, new: Any, ignore_decrease: bool) -> bool:
    """A gateway call near the observation made it: any call for a named attribute; for price and
    quantity one that set (or replaced) the observed value, or, for quantity, set more than what
    is left after sales."""
    if not near:
        return False
    if attribute not in VALUED.values() or any(c[1] is None for c in near):
        return True
    if new in {v for c in near for v in (c[1], c[2])}:
        return True
    return (
        attribute == "quantity"
        and ignore_decrease
        and any(c[1] is not None and not _lower(c[1], str(new)) for c in near)
    )


def _lower(new: str, known: str) -> bool:
    try:
        return int(new) < int(known)
    except ValueError:
        return False


def _already(state: dict[str, Any], key: str, new: Any, at: int, window: int) -> bool:
    """One alert per unexplained change: the same value seen again (poll and notification) is it."""
    alerted = state.setdefault("alerted", {})
    seen = alerted.get(key)
    if seen is not None and seen[1] == new and abs(seen[0] - at) <= window:
        return True
    alerted[key] = [at, new]
    return False


def _due(
    state: dict[str, Any], newest: int, grace: int, window: int, skew: int
) -> list[dict[str, Any]]:
    pending: list[dict[str, Any]] | None = state.get("pending")
    if pending is None:
        return []  # nothing held back (always, unless outside_gateway_grace_minutes is set)
    due = [p for p in pending if p["at"] + grace <= newest]
    state["pending"] = [p for p in pending if p["at"] + grace > newest]
    if not state["pending"]:
        del state["pending"]
    out = []
    for item in due:
        if item["kind"] == "listing":
            near = rc.calls_near(state, item["key"], item["at"], window, skew)
            if _explained(near, item["attribute"], item["new"], True):
                continue
        elif item["kind"] in ("feed", "report") and item["key"].split("|", 1)[1] in state.get(
            "ids", {}
        ):
            continue
        out.append(item)
    return out


def _observer(event: Event) -> str:
    if rc.adapter(event) == "sp-api-poller":
        return f"PartnerWatch's poll ({event.get('operation', 'SP-API')}, polled at {rc.origin(event, 'polled_at') or '?'})"
    return f"Amazon's {rc.origin(event, 'notification_type') or 'notification'} notification {rc.origin(event, 'notification_id') or '?'}"


def _finding(event: Event, item: dict[str, Any], ctx: Context) -> Finding:
    window = ctx.config.outside_gateway_window_minutes
    account = event["account_id"]
    if item["kind"] == "listing":
        sku, site, attribute = item["key"].split("|", 2)
        what = f"the {attribute} of {sku} on {site}" if site != "*" else f"the {attribute} of {sku}"
        change = (
            f"changed from {item['old']} to {item['new']}"
            if item["old"] is not None
            else f"became {item['new']}"
        )
        title = f"{attribute.capitalize()} of {sku}{'' if site == '*' else ' on ' + site} changed outside the gateway"
        nearest = item.get("nearest")
        gateway = (
            f"the nearest gateway call on it was {nearest[5] or 'a listing write'} by {nearest[4]} at {format_ms(nearest[0])}"
            f" (event {nearest[3]}{', setting ' + str(nearest[1]) if nearest[1] is not None else ''})"
            if nearest
            else "the gateway recorded no call on it"
        )
        desc = f"{what} {change}"
        sought = f"No gateway call changed {what} between {window} min before and {ctx.config.outside_gateway_skew_minutes} min after; {gateway}"
    else:
        title = {
            "bank": "Bank account changed (found by polling: no gateway call can do that)",
            "feed": "Feed of the seller's app submitted outside the gateway",
            "report": "Report of the seller's app requested outside the gateway",
            "payout": "On-demand payout made outside the gateway",
        }[item["kind"]]
        desc = item["desc"]
        sought = (
            "No SP-API call changes a bank account: it was changed in Seller Central or by Amazon"
            if item["kind"] == "bank"
            else "the gateway handed out no such id and made no such request"
        )
    summary = (
        f"Observed: {item['what']} (event {item['event_id']}) at {item['occurred_at']} says {desc} on account {account}."
        f" Gateway: {sought}. Amazon does not say who made the change."
    )
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=item["severity"],
        key=f"{account}|{item['key']}",
        title=title,
        summary=summary,
        response=RESPONSE,
        related=(item["event_id"],) if item["event_id"] != event["event_id"] else (),
        window=bucket(item["occurred_at"], ctx.config.suppression_minutes),
    )
