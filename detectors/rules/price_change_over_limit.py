"""A provider moving a listing's price by more than its grant allows, without an approval.

Price slashing is how a rogue or compromised agency does fast, quiet damage: a bestseller cut by
two thirds sells out at a loss within hours, and a price pushed far up kills the Buy Box. A grant
may set `max_price_change_pct`; larger moves in either direction need a live approval naming the
action (`approval_id`, checked by `pipeline.authorization.live_approval`). The limit is the most
generous one among the provider's live covering grants, a grant without one contributing
`DetectionConfig.max_price_change_pct`; a provider with no covering grant at all is held to that
default too (the scope rule reports the missing grant, this rule the size of the move).

The arithmetic is `decimal.Decimal` on the contract's decimal strings, never floats: a move of
exactly the limit is allowed, one cent more is not. Deliberately ignored: sellers and Amazon (a
seller repricing its own listing is its business), fields other than `price`, and changes whose
`old` price is missing or not positive: there is nothing to measure a percentage against (a
first price is set when a listing is created, which the scope rule watches). Many small steps
that add up to a large move are not chained here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.authorization import live_approval
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "price_change_over_limit"
RESPONSE = (
    "Restore the listing's previous price in Seller Central (or via the Listings API) now.",
    *responses.ABUSE,
)


def _price(value: Any) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def price_move(event: Event) -> tuple[Decimal, Decimal, Decimal] | None:
    """(old, new, percent moved) of the event's `price` change, when it can be measured."""
    for change in event.get("changes", ()):
        if change["field"] != "price":
            continue
        old, new = _price(change.get("old")), _price(change.get("new"))
        if old is None or new is None or old <= 0:
            return None
        return old, new, abs(new - old) * 100 / old
    return None


def decide(event: Event, auth: dict[str, Any], ctx: Context) -> Finding | None:
    actor = event["actor"]
    if actor["type"] != "provider" or event["action"] != "listing.price_change":
        return None
    move = price_move(event)
    if move is None:
        return None
    old, new, pct = move
    default = ctx.config.max_price_change_pct
    live = ctx.covering(event)
    limits = [g.get("max_price_change_pct", default) for g in live] or [default]
    limit = max(Decimal(str(x)) for x in limits)
    if pct <= limit or live_approval(auth, event) is not None:
        return None
    provider, principal = actor["provider_id"], actor["principal_id"]
    sku = event.get("resource", {}).get("id", "?")
    direction = "cut" if new < old else "raised"
    shown = pct.quantize(Decimal("0.1"))
    named = f"; approval {event['approval_id']} does not cover it" if "approval_id" in event else ""
    return Finding(
        detector=DETECTOR,
        severity=ctx.config.severity(DETECTOR, "high"),
        key=f"{event['account_id']}|{principal}|{sku}",
        window=bucket(event["occurred_at"], ctx.config.suppression_minutes),
        title=f"Provider {provider} {direction} the price of {sku} by {shown}%",
        summary=(
            f"Principal {principal} of provider {provider} {direction} the price of {sku} in"
            f" {event.get('marketplace')} on account {event['account_id']} from {old} to {new}"
            f" ({shown}%, outcome {event['outcome']}) at {event['occurred_at']}; the limit is"
            f" {limit.normalize():f}% without a live approval{named}."
        ),
        response=RESPONSE,
    )


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    finding = decide(event, ctx.auth, ctx)
    return [finding] if finding is not None else []
