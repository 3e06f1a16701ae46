"""Enforce mode: is a call inside the principal's grant? And the per-provider rate budget.

The grants, approvals and policy are the account's authorization state, folded from the ledger
with `pipeline.authorization` (ledger.py), the very state the detectors judge by, so what the
gateway refuses is what the detectors would have flagged. A call is allowed when a live grant
covering the principal (provider, `principals`, not revoked, not expired):
- has a scope matching each action the call becomes (`listing.*`, `data.read`, `*`),
- names every marketplace the call touches (or none: every site),
- names the SKU (`skus`: exact, or `prefix*`; none: every SKU), and admits the source IP,
- and, for actions in its `require_approval`, the call names a live approval
  (`x-pw-approval-id` header, checked by `pipeline.authorization.approval_problem`);
- a price change moves the price by at most the grant's `max_price_change_pct`
  (`PW_GATEWAY_MAX_PRICE_CHANGE_PCT` when the grant has none), or names a live approval.
A price whose old value is unknown (a new listing, or Amazon could not be asked) cannot be
measured, so it is not refused for its size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pipeline.authorization import (
    allows_ip,
    allows_scope,
    approval_problem,
    covering,
)
from pipeline.contract import action_matches


@dataclass(frozen=True)
class Denial:
    status: int  # 403 or 429
    code: str  # SP-API error code
    reason: str

    def body(self) -> dict[str, Any]:
        message = (
            "You exceeded your quota for the requested resource."
            if self.status == 429
            else "Access to requested resource is denied."
        )
        return {
            "errors": [
                {
                    "code": self.code,
                    "message": message,
                    "details": f"PartnerWatch gateway: {self.reason}",
                }
            ]
        }


def allows_sku(grant: dict[str, Any], sku: str | None) -> bool:
    patterns = grant.get("skus")
    if patterns is None or sku is None:
        return True
    return any(sku == p or (p.endswith("*") and sku.startswith(p[:-1])) for p in patterns)


def allows_sites(grant: dict[str, Any], sites: list[str]) -> bool:
    allowed = grant.get("marketplaces")
    return allowed is None or all(site in allowed for site in sites)


def price_move_pct(old: str | None, new: str | None) -> Decimal | None:
    if old is None or new is None:
        return None
    before, after = Decimal(old), Decimal(new)
    if before <= 0:
        return None
    return abs(after - before) * 100 / before


def decide(
    auth: dict[str, Any],
    event: dict[str, Any],
    *,
    sites: list[str],
    sku: str | None,
    old_price: str | None,
    new_price: str | None,
    default_max_pct: float,
) -> Denial | None:
    """None when the grant allows the event (a normalized-shaped event: actor, action, time)."""
    action = event["action"]
    live = covering(auth["grants"], event)
    if not live:
        return Denial(403, "Unauthorized", f"no live grant covers {event['actor']['principal_id']}")
    if "?" in sites:
        return Denial(403, "Unauthorized", "the call names an unknown marketplace")
    reasons: list[str] = []
    allowing = []
    ip = event.get("source", {}).get("ip")
    for grant in sorted(live, key=lambda g: g["grant_id"]):
        gid = grant["grant_id"]
        if not allows_scope(grant, action):
            reasons.append(f"grant {gid} does not allow {action}")
        elif not allows_sites(grant, sites):
            reasons.append(f"grant {gid} does not allow marketplace {', '.join(sites)}")
        elif not allows_sku(grant, sku):
            reasons.append(f"grant {gid} does not cover SKU {sku}")
        elif ip is not None and not allows_ip(grant, ip):
            reasons.append(f"grant {gid} does not admit {ip}")
        elif any(action_matches(p, action) for p in grant.get("require_approval", ())) and (
            problem := approval_problem(auth, event)
        ):
            reasons.append(f"grant {gid} requires an approval for {action}: {problem}")
        else:
            allowing.append(grant)
    if not allowing:
        return Denial(403, "Unauthorized", "; ".join(reasons))
    pct = price_move_pct(old_price, new_price) if action == "listing.price_change" else None
    if pct is not None:
        limit = max(Decimal(str(g.get("max_price_change_pct", default_max_pct))) for g in allowing)
        if pct > limit and approval_problem(auth, event) is not None:
            return Denial(
                403,
                "Unauthorized",
                f"price of {sku} from {old_price} to {new_price} moves {pct.quantize(Decimal('0.1'))}%,"
                f" over the {limit.normalize():f}% limit, without a live approval",
            )
    return None


class RateBudget:
    """A token bucket per provider: `rate` calls a second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, provider: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(provider, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[provider] = (tokens, now)
            return False
        self._buckets[provider] = (tokens - 1.0, now)
        return True
