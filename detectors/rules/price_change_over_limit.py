"""A provider moving a listing's price by more than its grant allows, without an approval.

Price slashing is how a rogue or compromised agency does fast, quiet damage: a bestseller cut by
two thirds sells out at a loss within hours, and a price pushed far up kills the Buy Box. A grant
may set `max_price_change_pct`; larger moves in either direction need a live approval naming the
action (`approval_id`, checked by `pipeline.authorization.live_approval`). The limit is the most
generous one among the provider's live covering grants, a grant without one contributing
`DetectionConfig.max_price_change_pct`; a provider with no covering grant at all is held to that
default too (the scope rule reports the missing grant, this rule the size of the move).

The arithmetic is `decimal.Decimal` (detectors/prices.py): a move of exactly the limit is
allowed, one cent more is not. Deliberately ignored: sellers and Amazon (a
seller repricing its own listing is its business), fields other than `price`, and changes whose
`old` price is missing or not positive: there is nothing to measure a percentage against (a
first price is set when a listing is created, which the scope rule watches). Many small steps
that add up to a large move are not chained here. Stateless.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.prices import price_move
from pipeline.alert import Finding
from pipeline.authorization import live_approval
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "price_change_over_limit"
SEVERITY = "high"
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = ("listing.price_change",)
RESPONSE = (
    "Restore the listing's previous price in Seller Central (or via the Listings API) now.",
    *responses.ABUSE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider" or event["action"] != "listing.price_change":
        return []
    move = price_move(event)
    if move is None:
        return []
    old, new, pct = move
    default = ctx.config.max_price_change_pct
    live = ctx.covering(event)
    limits = [g.get("max_price_change_pct", default) for g in live] or [default]
    limit = max(Decimal(str(x)) for x in limits)
    if pct <= limit or live_approval(ctx.auth, event) is not None:
        return []
    provider, principal = actor["provider_id"], actor["principal_id"]
    sku = event.get("resource", {}).get("id", "?")
    direction = "cut" if new < old else "raised"
    shown = pct.quantize(Decimal("0.1"))
    named = f"; approval {event['approval_id']} does not cover it" if "approval_id" in event else ""
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{principal}|{sku}",
            title=f"Provider {provider} {direction} the price of {sku} by {shown}%",
            summary=(
                f"Principal {principal} of provider {provider} {direction} the price of {sku} in"
                f" {event.get('marketplace')} on account {event['account_id']} from {old} to"
                f" {new} ({shown}%, outcome {event['outcome']}) at {event['occurred_at']}; the"
                f" limit is {limit.normalize():f}% without a live approval{named}."
            ),
            response=RESPONSE,
        )
    ]
