"""Hourly behaviour vectors of provider principals: the one feature code of the ML detector.

Training (`partnerwatch train`, rows read back from the warehouse) and streaming scoring (the
`behaviour_anomaly` detector, fed by the detect agent) both run events through
`AccountFeatures.observe` (detectors/behaviour/account_features.py), so the vectors a model was
fitted on and the ones it scores cannot drift apart. The state is a plain JSON dict (it lives in
the detect agent's `account_state` table), built per account in `seq` order, on event time only.

A vector describes one principal (`provider|principal`, on one account) in one clock hour (UTC),
or -- the provider-level kind -- the same features over all of one provider's principals on the
account in that hour (key `provider|*`): load spread over several principals, each unremarkable
alone, shows there. Both kinds are folded by the same `add`, on the same event, and are scored
by one model; the last feature, `provider_level`, says which kind a vector is.
An hour closes when the account's first event of a later hour arrives; the last, still open hour
of a history is never scored. Besides the hour's own counts, two features compare the hour with
the principal's past (kept in the same state): networks it never used before, and how far the
hour's mix of actions is from its usual mix. An event the seller approved (it names a live
approval covering it) is left out of every vector: the seller sanctioned it, so it is not
behaviour to score. Day vectors, beside these hours, are detectors/behaviour/day_features.py.
Bump `FEATURE_VERSION` whenever a feature's meaning changes: a model fitted on other features is
then refused (detectors/behaviour/model.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from detectors.grants import within_hours
from detectors.networks import network
from detectors.prices import price_move
from detectors.windows import epoch_ms
from pipeline.authorization import Grant
from pipeline.contract import WRITE_PREFIXES
from pipeline.event import Event, format_ms

#: 2: provider-level vectors and the `provider_level` indicator; 3: day vectors
#: (detectors/behaviour/day_features.py) and approved changes left out of every vector
FEATURE_VERSION = 3
HOUR_MS = 3_600_000

#: The vector's columns, in order; `DESCRIPTIONS` words them for alerts.
FEATURES: tuple[str, ...] = (
    "events",
    "distinct_skus",
    "distinct_ips",
    "write_share",
    "price_change_mean_abs_pct",
    "price_change_max_abs_pct",
    "price_change_mean_pct",
    "off_hours_share",
    "off_hours_events",
    "failed_share",
    "funds_actions",
    "report_downloads",
    "report_share",
    "new_networks",
    "mix_shift",
    "provider_level",
)
#: The two kinds of vector: one principal, or all of one provider's principals on an account.
KINDS: tuple[str, ...] = ("principal", "provider")
#: The principal part of a provider-level key (`provider|*`).
ALL_PRINCIPALS = "*"
DESCRIPTIONS: dict[str, str] = {
    "events": "events in the hour",
    "distinct_skus": "distinct SKUs touched",
    "distinct_ips": "distinct source IPs",
    "write_share": "share of writes",
    "price_change_mean_abs_pct": "mean absolute price change (%)",
    "price_change_max_abs_pct": "largest absolute price change (%)",
    "price_change_mean_pct": "mean price change (%, negative: cuts)",
    "off_hours_share": "share of events outside office hours",
    "off_hours_events": "events outside office hours",
    "failed_share": "share of failed or denied calls",
    "funds_actions": "funds actions",
    "report_downloads": "report downloads",
    "report_share": "share of report downloads",
    "new_networks": "networks (ASN or /24) never used before",
    "mix_shift": "shift of the action mix from the principal's usual mix (distance x sqrt(events))",
    "provider_level": "1 for a provider-level vector (all its principals), 0 for one principal",
}
#: Features that only grow while an hour is open: a partial hour already beyond the training
#: range on one of them can be scored early.
MONOTONE: tuple[str, ...] = (
    "events",
    "distinct_skus",
    "distinct_ips",
    "off_hours_events",
    "funds_actions",
    "report_downloads",
    "new_networks",
)
FAMILIES: tuple[str, ...] = ("listing", "inventory", "ads", "report", "auth")

#: Office hours assumed when no covering grant sets `active_hours` (local time, minutes).
OFFICE_START, OFFICE_END = 7 * 60, 20 * 60
#: Distinct SKUs / IPs remembered per hour, networks per principal, evidence ids per hour
#: and kind of evidence.
MAX_DISTINCT = 500
MAX_KNOWN_NETWORKS = 200
MAX_EVIDENCE = 10
#: Which of the hour's events back a deviating feature (evidence kinds kept per window).
EVIDENCE_OF: dict[str, str] = {
    "price_change_mean_abs_pct": "price",
    "price_change_max_abs_pct": "price",
    "price_change_mean_pct": "price",
    "off_hours_share": "off",
    "off_hours_events": "off",
    "failed_share": "bad",
    "funds_actions": "funds",
    "report_downloads": "report",
    "report_share": "report",
    "new_networks": "new",
}
#: Pseudo-counts shrinking shares (toward the principal's usual) and mean price moves (toward 0).
SHARE_PRIOR = 5
PRICE_PRIOR = 3
#: Weight of a closed hour in the principal's usual action mix (an exponential average).
MIX_ALPHA = 0.05
#: Principals idle this long are forgotten.
IDLE_HOURS = 30 * 24


#: What a closed vector spans: a clock hour, or a UTC day (detectors/behaviour/day_features.py).
HOUR, DAY = "hour", "day"


@dataclass(frozen=True, slots=True)
class Closed:
    """One closed hour of one principal (or a provider's day): what gets scored."""

    key: str  # provider|principal, or provider|* for the provider-level vector
    hour: int  # epoch hour (UTC); for a day, its first hour
    vector: list[float]
    #: evidence kind ("all", "price", "report", ... see EVIDENCE_OF) -> the window's first such events
    evidence: dict[str, list[str]]
    span: str = HOUR

    @property
    def kind(self) -> str:
        """ "provider" for the provider-level vector, else "principal"; for a day vector,
        "provider_accounts_day" (a provider over all its accounts) or "provider_day"."""
        if self.span == DAY:
            return "provider_accounts_day" if self.vector[-1] >= 0.5 else "provider_day"
        return kind_of(self.key)

    @property
    def window(self) -> str:
        """The alert window: the hour's start, or the day's start and `/P1D` (ISO 8601)."""
        start = format_ms(self.hour * HOUR_MS)
        return start if self.span == HOUR else start + "/P1D"

    def evidence_for(
        self, features: list[str], limit: int = 20, evidence_of: dict[str, str] | None = None
    ) -> list[str]:
        """The events behind `features` (their evidence kinds, in order), then the window's first."""
        kinds = EVIDENCE_OF if evidence_of is None else evidence_of
        out: list[str] = []
        for kind in [*(kinds.get(f, "all") for f in features), "all"]:
            for event_id in self.evidence.get(kind, ()):
                if event_id not in out and len(out) < limit:
                    out.append(event_id)
        return out


def principal_key(event: Event) -> str | None:
    """The principal a provider event belongs to; None for sellers and Amazon (not scored)."""
    actor = event["actor"]
    if actor["type"] != "provider":
        return None
    return f"{actor.get('provider_id', '')}|{actor['principal_id']}"


def provider_key(key: str) -> str:
    """The provider-level key of a principal key: `provider|*`."""
    return key.partition("|")[0] + "|" + ALL_PRINCIPALS


def kind_of(key: str) -> str:
    return "provider" if key.endswith("|" + ALL_PRINCIPALS) else "principal"


def kind_of_vector(vector: list[float]) -> str:
    return "provider" if vector[-1] >= 0.5 else "principal"


@lru_cache(maxsize=16384)
def _local_minutes(minute: int, tz: str) -> int:
    if tz == "UTC":
        return minute % 1440
    from detectors.windows import local_time
    from pipeline.event import format_ms

    local = local_time(format_ms(minute * 60_000), tz)
    return local.hour * 60 + local.minute


def is_off_hours(ts: str, live: list[Grant]) -> bool:
    """Outside office hours: outside every covering grant's `active_hours` when any sets them,
    or outside 07:00-20:00 local time (the first such grant's time zone, else UTC) -- so night
    work inside a round-the-clock grant still counts."""
    with_hours = [g for g in live if g.get("active_hours")]
    tz = "UTC"
    if with_hours:
        if not any(within_hours(g, ts) for g in with_hours):
            return True
        tz = min(with_hours, key=lambda g: g["grant_id"])["active_hours"]["tz"]
    now = _local_minutes(epoch_ms(ts) // 60_000, tz)
    return not OFFICE_START <= now < OFFICE_END


@lru_cache(maxsize=65536)
def _network_of(ip: str) -> str | None:
    """The operator (ASN name) of a public address, else its /24 or /48."""
    from detectors.geo import lookup

    place = lookup(ip)
    return place.asn_name or network(ip)


def new_window(hour: int) -> dict[str, Any]:
    return {
        "h": hour,
        "n": 0,
        "sku": {},
        "ip": {},
        "wr": 0,
        "pcn": 0,
        "pcs": 0.0,
        "pcd": 0.0,
        "pcm": 0.0,
        "off": 0,
        "bad": 0,
        "fund": 0,
        "rep": 0,
        "new": 0,
        "fam": {},
        "ev": {},
    }


def _evidence(w: dict[str, Any], kind: str, event_id: str) -> None:
    ids = w["ev"].setdefault(kind, [])
    if len(ids) < MAX_EVIDENCE:
        ids.append(event_id)


def add(principal: dict[str, Any], event: Event, off_hours: bool) -> None:
    """Count `event` into the principal's open window (opened by the caller)."""
    w = principal["w"]
    w["n"] += 1
    event_id = event["event_id"]
    _evidence(w, "all", event_id)
    action = event["action"]
    family = action.partition(".")[0]
    w["fam"][family] = w["fam"].get(family, 0) + 1
    _evidence(w, family, event_id)
    if action.startswith(WRITE_PREFIXES):
        w["wr"] += 1
    if family == "funds":
        w["fund"] += 1
    elif action == "report.download":
        w["rep"] += 1
    if event["outcome"] != "success":
        w["bad"] += 1
        _evidence(w, "bad", event_id)
    if off_hours:
        w["off"] += 1
        _evidence(w, "off", event_id)
    resource = event.get("resource")
    if resource and resource.get("type") == "listing" and len(w["sku"]) < MAX_DISTINCT:
        w["sku"][resource["id"]] = 1
    ip = (event.get("source") or {}).get("ip")
    if ip and ip not in w["ip"] and len(w["ip"]) < MAX_DISTINCT:
        w["ip"][ip] = 1
        net = _network_of(ip)
        known = principal["known"]
        if net is not None and net not in known:
            if principal["hours"]:  # a principal's first hour has nothing to be new against
                w["new"] += 1
                _evidence(w, "new", event_id)
            if len(known) >= MAX_KNOWN_NETWORKS:
                del known[next(iter(known))]  # forget the oldest network
            known[net] = 1
    if action == "listing.price_change":
        move = price_move(event)
        if move is not None:
            pct = float(move[2])
            w["pcn"] += 1
            w["pcs"] += pct
            w["pcd"] += pct if move[1] >= move[0] else -pct
            w["pcm"] = max(w["pcm"], pct)
            _evidence(w, "price", event_id)


def vector(principal: dict[str, Any]) -> list[float]:
    """The open window's feature vector, against the principal's usual mix.

    Shares and mean price moves are shrunk toward the usual value (pseudo-counts `SHARE_PRIOR`
    and `PRICE_PRIOR`): in an hour of three events, one download is not a third of the work, and
    one price change is not a trend.
    """
    w = principal["w"]
    n = max(1, w["n"])
    fam = w["fam"]
    shares = [fam.get(f, 0) / n for f in FAMILIES]
    usual = principal["mix"] if principal["hours"] else shares
    report_usual = usual[FAMILIES.index("report")]
    write_usual = sum(usual[FAMILIES.index(f)] for f in ("listing", "inventory", "ads"))
    prices = w["pcn"] + PRICE_PRIOR
    k = SHARE_PRIOR
    # total variation distance, times sqrt(events): a few events are a noisy mix, many are not
    distance = 0.5 * sum(abs(shares[i] - usual[i]) for i in range(len(FAMILIES)))
    shift = distance * math.sqrt(w["n"]) if principal["hours"] else 0.0
    return [
        float(w["n"]),
        float(len(w["sku"])),
        float(len(w["ip"])),
        (w["wr"] + k * write_usual) / (w["n"] + k),
        w["pcs"] / prices,
        w["pcm"],
        w["pcd"] / prices,
        w["off"] / n,
        float(w["off"]),
        w["bad"] / (w["n"] + k),
        float(w["fund"]),
        float(w["rep"]),
        (w["rep"] + k * report_usual) / (w["n"] + k),
        float(w["new"]),
        shift,
        1.0 if principal.get("agg") else 0.0,
    ]


def close(key: str, principal: dict[str, Any]) -> Closed:
    """Close the principal's window: its vector, then the hour joins the principal's usual mix."""
    w = principal["w"]
    closed = Closed(key, w["h"], vector(principal), w["ev"])
    n = max(1, w["n"])
    shares = [w["fam"].get(f, 0) / n for f in FAMILIES]
    if principal["hours"]:
        principal["mix"] = [
            (1 - MIX_ALPHA) * u + MIX_ALPHA * s
            for u, s in zip(principal["mix"], shares, strict=True)
        ]
    else:
        principal["mix"] = shares
    principal["hours"] += 1
    principal["last"] = w["h"]
    del principal["w"]
    return closed
