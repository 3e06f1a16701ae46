"""A provider principal acting from an IP address outside its grant's `ip_allowlist`.

Leaked API keys and shared agency logins show up first as requests from somewhere new. The rule
fires only when the principal holds at least one live grant and none of those grants admits the
source IP; a grant without an allowlist admits any address. Actions without a grant at all are
the scope detector's business, not this one's. One alert per principal, IP and UTC hour.
Deliberately ignored: events without a source IP, and actors no live grant covers (sellers,
Amazon, providers without a grant). Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.alert import Finding
from pipeline.authorization import allows_ip
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "ip_outside_allowlist"
SEVERITY = "high"
RESPONSE = (
    "Confirm with the provider whether this address is theirs; if not, rotate the principal's"
    " credentials (SP-API refresh token or Seller Central password) at once.",
    "Revoke or narrow the grant until the provider explains the access.",
    "Review every action from this IP with `partnerwatch sql` (audit.events, source_ip).",
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    ip = event.get("source", {}).get("ip")
    if ip is None:
        return []
    live = ctx.covering(event)
    if not live:
        return []
    # A network of a live grant's allowlist holds the address (the per-event memo that
    # impossible_travel, before this rule, has mostly filled): admitted, without asking each
    # grant again. When there is none (an entry wider than a declaring network's, or no
    # match), each grant's allowlist decides.
    if ctx.declared_network(event) is not None or any(allows_ip(g, ip) for g in live):
        return []
    actor = event["actor"]
    allowed = sorted({cidr for g in live for cidr in g.get("ip_allowlist", ())})
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{actor['principal_id']}|{ip}",
            window=event["occurred_at"][:13],  # one alert per principal, IP and hour
            title=f"Provider {actor['provider_id']} acted from {ip}, outside its IP allowlist",
            summary=(
                f"Principal {actor['principal_id']} of provider {actor['provider_id']} performed"
                f" {event['action']} on account {event['account_id']} from {ip}; the live"
                f" grant(s) {', '.join(sorted(g['grant_id'] for g in live))} allow only"
                f" {', '.join(allowed)}."
            ),
            response=RESPONSE,
        )
    ]
