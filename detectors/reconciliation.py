"""What the gateway did and what Amazon observed, per listing attribute: the reconciliation's memory.

Used by `change_outside_gateway`. Events are reduced to keys `sku|site|attribute` (attribute:
`price`, `quantity`, `status`, or a listing attribute's name; quantity keys name every site, `*`)
and kept per account:
- `calls`: the gateway's successful listing writes per key: (event time, the value it set when
  known, the value it replaced when known, event id, who);
- `hist`: the values known per key over event time (set by the gateway, or observed by Amazon),
  so an observation is compared with the value in force *at its own event time*: notifications
  arrive late, repeated and out of order;
- `ids`: submission ids the gateway saw (feeds, reports, payouts), `schedules`: report types it
  scheduled, `payouts`: on-demand payouts it asked for per site;
- `asin`: `asin|site -> sku`, learned from events that carry both, for offer notifications that
  name only the ASIN.

Everything is pruned by event time (never the wall clock): calls after twice the window, ids after
`outside_gateway_id_days`; the last known value of a key is kept whatever its age, and at most
`MAX_KEYS` keys (the least recently seen go first).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

from detectors.windows import epoch_ms
from pipeline.event import Event

GATEWAY = "sp-api-gateway"
OBSERVERS = frozenset({"sp-api-notifications", "sp-api-poller"})
LISTING_WRITES = frozenset(
    {
        "listing.create",
        "listing.update",
        "listing.delete",
        "listing.price_change",
        "inventory.update",
    }
)
MAX_KEYS = 5000
MAX_PER_KEY = 24


def adapter(event: Event) -> str:
    origin = event.get("origin")
    return str(origin.get("adapter", "")) if isinstance(origin, dict) else ""


def origin(event: Event, name: str) -> Any:
    found = event.get("origin")
    return found.get(name) if isinstance(found, dict) else None


def value(attribute: str, raw: Any) -> str | None:
    """A comparable form of a price (normalized decimal) or any other value (its text)."""
    if raw is None or isinstance(raw, bool):
        return None
    if attribute == "price":
        try:
            return format(Decimal(str(raw)).normalize(), "f")
        except InvalidOperation:
            return None
    return str(raw)


def who(event: Event) -> str:
    actor = event["actor"]
    if actor["type"] == "provider":
        return f"provider {actor.get('provider_id')} (principal {actor['principal_id']})"
    return f"{actor['type']} {actor['principal_id']}"


def gateway_writes(event: Event) -> list[tuple[str, str | None, str | None]]:
    """(attribute, new value, old value) a successful gateway listing write changed."""
    if (
        event["action"] not in LISTING_WRITES
        or event["outcome"] != "success"
        or adapter(event) != GATEWAY
    ):
        return []
    out: list[tuple[str, str | None, str | None]] = [
        ("status", None, None)
    ]  # any write may move it
    for change in event.get("changes", []):
        field = change["field"]
        out.append((field, value(field, change.get("new")), value(field, change.get("old"))))
    if event["action"] == "listing.delete":
        out.append(("status", "DELETED", None))
    return out


def listing_key(event: Event, state: dict[str, Any]) -> str | None:
    """`sku|site` of a listing event (an ASIN-only observation through the learned map)."""
    resource = event.get("resource", {})
    site = event.get("marketplace", "?")
    asin = origin(event, "asin")
    if resource.get("type") == "listing" and resource.get("id"):
        if isinstance(asin, str) and asin:
            learned = state.setdefault("asin", {})
            learned[f"{asin}|{site}"] = resource["id"]
            if len(learned) > MAX_KEYS:
                learned.pop(next(iter(learned)))
        return f"{resource['id']}|{site}"
    if resource.get("type") == "asin":
        sku = state.get("asin", {}).get(f"{resource.get('id')}|{site}")
        return f"{sku}|{site}" if sku else None
    return None


def attribute_key(key: str, attribute: str) -> str:
    """`sku|site|attribute`; a quantity is the SKU's in every site (MFN stock is shared across a
    region's marketplaces, and Amazon's quantity notification names no marketplace)."""
    if attribute == "quantity":
        return f"{key.split('|', 1)[0]}|*|quantity"
    return f"{key}|{attribute}"


def remember_call(
    state: dict[str, Any], key: str, at: int, new: str | None, old: str | None, event: Event
) -> None:
    calls = state.setdefault("calls", {}).setdefault(key, [])
    entry = [at, new, old, event["event_id"], who(event), event.get("operation", "")]
    if entry not in calls:
        calls.append(entry)
        calls.sort(key=lambda c: c[0])
        del calls[:-MAX_PER_KEY]
    if new is not None:
        remember_value(state, key, at, new, "gateway")


def remember_value(state: dict[str, Any], key: str, at: int, new: str, source: str) -> None:
    hist = state.setdefault("hist", {})
    entries = hist.pop(key, [])  # re-inserted last: the dict's order is recency of use
    if [at, new, source] not in entries:
        entries.append([at, new, source])
        entries.sort(key=lambda e: e[0])
    hist[key] = entries[-MAX_PER_KEY:]
    while len(hist) > MAX_KEYS:
        hist.pop(next(iter(hist)))


def value_at(state: dict[str, Any], key: str, at: int) -> str | None:
    """The value known for `key` at event time `at` (the latest entry not after it)."""
    known = None
    for entry_at, entry_value, _ in state.get("hist", {}).get(key, []):
        if entry_at > at:
            break
        known = entry_value
    return known


def calls_near(
    state: dict[str, Any], key: str, at: int, before_ms: int, after_ms: int
) -> list[list[Any]]:
    return [
        c for c in state.get("calls", {}).get(key, []) if at - before_ms <= c[0] <= at + after_ms
    ]


def nearest_call(state: dict[str, Any], key: str, at: int) -> list[Any] | None:
    calls = state.get("calls", {}).get(key, [])
    return min(calls, key=lambda c: abs(c[0] - at)) if calls else None


#: The tables `prune` looks at, in the order it drops the empty ones.
_TABLES: Final = ("calls", "ids", "schedules", "alerted", "payouts", "asin", "hist")


def prune(state: dict[str, Any], newest: int, keep_calls_ms: int, keep_ids_ms: int) -> None:
    """Drop what is older than the horizons, in place: lists are rebuilt only where an entry
    goes (the state is the stored JSON: the same values in the same order either way), and an
    account with none of the tables (no gateway or observer events yet) costs a few lookups."""
    for table in _TABLES:
        if table in state:
            break
    else:
        return
    horizon = newest - keep_calls_ms
    calls: dict[str, list[list[Any]]] | None = state.get("calls")
    if calls:
        for key in list(calls):
            entries = calls[key]
            for c in entries:
                if c[0] < horizon:
                    entries = calls[key] = [c for c in entries if c[0] >= horizon]
                    break
            if not entries:
                del calls[key]
    hist: dict[str, list[list[Any]]] | None = state.get("hist")
    if hist:
        for key in list(hist):
            entries = hist[key]
            older = [e for e in entries if e[0] < horizon]
            # the latest older entry is kept (the value in force at the horizon), first; the
            # list is left as it is when that is all it holds already
            if len(older) > 1 or (older and entries[0] is not older[0]):
                hist[key] = older[-1:] + [e for e in entries if e[0] >= horizon]
    for table in ("ids", "schedules", "alerted"):
        found: dict[str, Any] | None = state.get(table)
        if found:
            for name in [
                n
                for n, at in found.items()
                if (at[0] if isinstance(at, list) else at) < newest - keep_ids_ms
            ]:
                del found[name]
    payouts: dict[str, list[list[Any]]] | None = state.get("payouts")
    if payouts:
        for site in list(payouts):
            payouts[site] = [p for p in payouts[site] if p[0] >= newest - keep_ids_ms]
            if not payouts[site]:
                del payouts[site]
    for table in _TABLES:
        if table in state and not state[table]:
            del state[table]


def event_ms(event: Event) -> int:
    return epoch_ms(event["occurred_at"])
