"""A provider principal idle for weeks suddenly making sensitive writes from a new network.

Why: the credentials of staff who left an agency, or of an integration nobody uses any more, are
the ones nobody watches; when one of them wakes up from somewhere new and starts writing, it is
rarely the agency.

What counts: provider events, keyed by provider and principal across accounts. A principal
*wakes* when it acts again after an idle gap of at least `dormant_days` and at least
`dormant_gap_factor` x its own longest earlier gap (a monthly job that sleeps 25 days is not
dormant after 28; every gap is learned, so a job's first long sleep may wake it, harmlessly
unless it then writes from somewhere new). In the `INCIDENT_HOURS` after waking, a
sensitive write (listing, inventory, ads, funds, tax and account writes, and the sensitive
actions of detectors/grants.py) from a network it first used after waking fires, unless the
seller allowlisted that network for the principal on the account (detectors/networks.py). A
principal with no history before the gap cannot wake: its first events only teach it.

One alert per waking (window: the wake); the evidence names the principal's last event before
the gap, the event that woke it and the writes since, up to `RECENT`. State per principal: its
first and last activity, the last event's id, its longest gap, its known networks
(detectors/known_networks.py) and an open waking; principals silent for `FORGET_DAYS` are
dropped, at most `MAX_PRINCIPALS` kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import known_networks, responses
from detectors.grants import SENSITIVE_ACTIONS
from detectors.networks import network
from pipeline.alert import Finding
from pipeline.contract import WRITE_PREFIXES
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "dormant_reactivation"
SEVERITY = "high"
INCIDENT_HOURS = 24
RECENT = 20
FORGET_DAYS = 180
MAX_PRINCIPALS = 1000
_DAY_MS = 86_400_000
RESPONSE = (
    "Ask the provider who still uses this principal and from where; disable logins and API clients"
    " of staff who left or integrations no longer in use.",
    responses.ROTATE,
    *responses.ABUSE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider":
        return []
    cfg = ctx.config
    now = ctx.epoch_ms(event["occurred_at"])
    principals: dict[str, Any] = state.setdefault("p", {})
    rec = principals.get(actor["principal_id"])
    if rec is None:
        rec = principals[actor["principal_id"]] = {
            "since": now,
            "last": now,
            "id": event["event_id"],
        }
        _forget(principals, now)
    last = rec["last"]
    if now > last:
        gap = now - last
        if gap >= max(cfg.dormant_days * _DAY_MS, cfg.dormant_gap_factor * rec.get("gap", 0)):
            rec["woke"] = {
                "at": now,
                "before": rec["id"],
                "ids": [event["event_id"]],
                "gap": gap,
                "usual": rec.get("gap", 0),
            }
        rec["gap"] = max(rec.get("gap", 0), gap)
        rec["last"], rec["id"] = now, event["event_id"]
    woke = rec.get("woke")
    if woke is not None and now - woke["at"] > INCIDENT_HOURS * 3_600_000:
        del rec["woke"]
        woke = None
    ip = event.get("source", {}).get("ip")
    net = network(ip) if ip is not None else None
    if net is not None:
        known_networks.learn(rec, net, now)
    if woke is None or net is None or not _sensitive_write(event["action"]):
        return []
    if not known_networks.is_fresh(rec, net, now, now - woke["at"] + 1, 0):
        return []  # a network it used before waking
    if ctx.declared_network(event) is not None:
        return []
    if event["event_id"] not in woke["ids"]:
        woke["ids"] = [*woke["ids"], event["event_id"]][-RECENT:]
    days = woke["gap"] / _DAY_MS
    usual = woke["usual"] / _DAY_MS
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{actor['provider_id']}|{actor['principal_id']}",
            window=format_ms(woke["at"]),
            title=f"Provider {actor['provider_id']} principal {actor['principal_id']} woke after {days:.0f} idle days and wrote from a new network",
            summary=(
                f"Principal {actor['principal_id']} of provider {actor['provider_id']} was idle for"
                f" {days:.1f} days (its longest earlier gap: {usual:.1f} days; last event before:"
                f" {woke['before']}) and woke at {format_ms(woke['at'])}; then {event['action']} on"
                f" account {event['account_id']} from {ip}, a network it had not used before"
                f" (event {event['event_id']})."
            ),
            response=RESPONSE,
            related=tuple(i for i in (woke["before"], *woke["ids"]) if i != event["event_id"]),
        )
    ]


def _sensitive_write(action: str) -> bool:
    return action.startswith(WRITE_PREFIXES) or action in SENSITIVE_ACTIONS


def _forget(principals: dict[str, Any], now: int) -> None:
    horizon = now - FORGET_DAYS * _DAY_MS
    for gone in [p for p, r in principals.items() if r["last"] < horizon]:
        del principals[gone]
    while len(principals) > MAX_PRINCIPALS:
        del principals[min(principals, key=lambda p: principals[p]["last"])]
