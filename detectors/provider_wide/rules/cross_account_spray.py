"""One provider principal active on many seller accounts within minutes, from a new network.

Why: an agency's staff and integrations reach the sellers they serve from their own few networks;
a stolen credential (SP-API client, staff login) is tried by the thief against every account it
opens, from the thief's network, within minutes. No per-account rule sees that: each account
sees one unusual event.

What counts: provider events with `source.ip`, keyed by provider and principal across accounts.
An event is from a *new* network when the principal first used that network (/24, /48) less
than `spray_window_minutes` ago, after at least `LEARN_MINUTES` of history (its first networks
are learned, not reported), and the network is not one the seller allowlisted for the principal
on that account (detectors/networks.py). The rule fires when the distinct accounts the principal
acted on from new networks within `spray_window_minutes` (the densest such window around the
event, so an act arriving late, up to `windows.LATENESS_MS`, still counts) reach the threshold:
`spray_min_accounts`, or `spray_baseline_factor` x the principal's usual number of accounts per
window when it has history (the median of its last `HISTORY` active tumbling windows, every
network counted), whichever is larger. An agency whose principals routinely sweep dozens of
accounts sets its own bar.

One alert per spray: every event while it continues folds into it (window: its first act), and
its evidence names the spray's events, one or more per account, up to `RECENT`. State per
principal: known networks (detectors/known_networks.py), the recent acts from new networks, the
current window's accounts and the bounded history; principals idle `IDLE_DAYS` are dropped.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from detectors import known_networks, responses
from detectors.networks import network
from detectors.windows import LATENESS_MS, densest
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "cross_account_spray"
SEVERITY = "high"
LEARN_MINUTES = 60
HISTORY = 24
MIN_HISTORY = 3
MAX_ACTS = 64
RECENT = 20
IDLE_DAYS = 30
MAX_PRINCIPALS = 500
RESPONSE = (
    "Suspend the principal on every account it touched (the evidence names each): its credential"
    " is being used by someone outside the provider's network.",
    responses.ROTATE,
    responses.CONFIRM,
    responses.CASE,
    responses.PRESERVE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    ip = event.get("source", {}).get("ip")
    if actor["type"] != "provider" or ip is None:
        return []
    net = network(ip)
    if net is None:
        return []
    cfg = ctx.config
    now = ctx.epoch_ms(event["occurred_at"])
    size = max(1, cfg.spray_window_minutes) * 60_000
    principals: dict[str, Any] = state.setdefault("p", {})
    record = principals.get(actor["principal_id"])
    if record is None:
        record = principals[actor["principal_id"]] = {
            "clock": now,
            "bucket": now // size,
            "accts": [],
        }
        _forget(principals, now)
    record["clock"] = max(record["clock"], now)
    _window(record, event["account_id"], now, size)
    known_networks.learn(record, net, now)
    fresh = known_networks.is_fresh(record, net, now, size, LEARN_MINUTES * 60_000)
    if not fresh or ctx.declared_network(event) is not None:
        return []
    kept = [a for a in record.get("acts", []) if a[0] > record["clock"] - size - LATENESS_MS]
    kept.append([now, event["account_id"], event["event_id"]])
    kept.sort()
    record["acts"] = kept = kept[-MAX_ACTS:]
    acts = densest(kept, now, size)
    accounts = sorted({a[1] for a in acts})
    history = record.get("hist", [])
    usual = statistics.median(history) if len(history) >= MIN_HISTORY else 0
    need = max(cfg.spray_min_accounts, cfg.spray_baseline_factor * usual)
    if len(accounts) < need:
        record.pop("spray", None)
        return []
    start = record.get("spray") or format_ms(acts[0][0])
    record["spray"] = start
    minutes = size // 60_000
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{actor['provider_id']}|{actor['principal_id']}",
            window=start,
            title=f"Provider {actor['provider_id']} principal {actor['principal_id']} hit {len(accounts)} accounts from a new network",
            summary=(
                f"Principal {actor['principal_id']} of provider {actor['provider_id']} acted on"
                f" {len(accounts)} seller accounts ({', '.join(accounts)}) within {minutes} minutes"
                f" from networks it had not used before (latest {ip}, {event['action']} on"
                f" {event['account_id']}, event {event['event_id']}); the threshold is {need:g}"
                f" accounts ({len(history)} earlier windows on record). The spray began at {start}."
            ),
            response=RESPONSE,
            related=_evidence(acts, event["event_id"]),
        )
    ]


def _window(record: dict[str, Any], account: str, now: int, size: int) -> None:
    """Count the principal's accounts per tumbling window (every network) for its baseline."""
    bucket = record["clock"] // size
    if bucket > record["bucket"]:
        if record["accts"]:
            record["hist"] = [*record.get("hist", []), len(record["accts"])][-HISTORY:]
        record["bucket"], record["accts"] = bucket, []
    if now // size == record["bucket"] and account not in record["accts"]:
        record["accts"].append(account)


def _evidence(acts: list[list[Any]], event_id: str) -> tuple[str, ...]:
    """The first act on each account, then the latest others, at most `RECENT` in all."""
    firsts: dict[str, str] = {}
    for _, account, act in acts:
        firsts.setdefault(account, act)
    chosen = list(firsts.values())[:RECENT]
    for _, _, act in acts[::-1]:  # not reversed(): mypyc 2.4 fails on it here
        if len(chosen) >= RECENT:
            break
        if act not in chosen:
            chosen.append(act)
    return tuple(a for a in sorted(chosen, key=[a[2] for a in acts].index) if a != event_id)


def _forget(principals: dict[str, Any], now: int) -> None:
    horizon = now - IDLE_DAYS * 86_400_000
    for gone in [p for p, r in principals.items() if r["clock"] < horizon]:
        del principals[gone]
    while len(principals) > MAX_PRINCIPALS:
        del principals[min(principals, key=lambda p: principals[p]["clock"])]
