"""A provider principal acting from a country or network operator it has never used before.

Why: a stolen SP-API refresh token or a shared agency password gets used from the thief's side:
another country, a VPS host, a proxy network. An agency's staff and integrations work from a few
places, so the first request from a new country or a new network operator (ASN) is worth a look
even when the grant has no IP allowlist to break.

What counts: events with `source.ip` whose actor is a provider, keyed per principal within the
account. Ignored: seller and Amazon actors (sellers travel, log in from phones and hotels; their
whereabouts are not a delegated-access risk) and addresses with neither a country nor an operator
(private, reserved, unknown to the geoip data, see detectors/geo.py). An address inside a network
the seller allowlisted for the principal (detectors/networks.py) teaches its country and
operator but is never reported: the seller vouched for it, and addresses outside the allowlist
are ip_outside_allowlist's business as well.

A network is its AS number when the geoip data has one (an ASN mmdb, PW_GEOIP_ASN_DB), else its
operator's name (the bundled data has names only, see detectors/geo.py). Switching from names to
numbers does not make every known network new: an AS whose operator name the principal already
used is learned quietly (the name ages out of memory afterwards).

No baseline, no alert: a principal's first events only teach it its places, until it has
`BASELINE_EVENTS` located events or its first one is `BASELINE_HOURS` old, whichever comes first
(a new integration's first hours would otherwise be all "new"). Memory is bounded and follows
event time: per principal at most `MAX_COUNTRIES` countries and `MAX_OPERATORS` operators (the
least recently used is dropped), each forgotten `MEMORY_DAYS` after its last use (it is new
again afterwards), and a principal silent that long is dropped and starts a new baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from detectors import geo, responses
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "new_country_or_asn"
SEVERITY = "medium"
RESPONSE = (
    "Ask the provider whether this principal now works from this country or network (travel, new"
    " office, VPN, cloud host); a principal nobody can place is a leaked credential.",
    responses.ROTATE,
    "Review the principal's actions from this address with `partnerwatch sql` (audit.events,"
    " source_ip) and revoke the grant if any was not the provider's.",
)

BASELINE_EVENTS: Final = 20
BASELINE_HOURS: Final = 24
MAX_COUNTRIES: Final = 32
MAX_OPERATORS: Final = 64
MEMORY_DAYS: Final = 90
_HOUR_MS: Final = 3_600_000
_MEMORY_MS: Final = MEMORY_DAYS * 24 * _HOUR_MS


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    ip = event.get("source", {}).get("ip")
    if actor["type"] != "provider" or ip is None:
        return []
    place = geo.lookup(ip)
    if place.country is None and place.asn_name is None and place.asn is None:
        return []
    now = ctx.epoch_ms(event["occurred_at"])
    principals: dict[str, Any] = state.setdefault("principals", {})
    _sweep(state, principals, now)
    seen = principals.get(actor["principal_id"])
    if seen is None:
        seen = principals[actor["principal_id"]] = {
            "first": now,
            "last": now,
            "n": 0,
            "countries": {},
            "operators": {},
        }
    countries: dict[str, int] = seen["countries"]
    operators: dict[str, int] = seen["operators"]
    _forget(countries, now)
    _forget(operators, now)
    baselined = seen["n"] >= BASELINE_EVENTS or now - seen["first"] >= BASELINE_HOURS * _HOUR_MS
    new_country = place.country is not None and place.country not in countries
    network = _network(place)
    new_operator = (
        network is not None
        and network not in operators
        and (place.asn is None or place.asn_name is None or place.asn_name not in operators)
    )
    report = baselined and (new_country or new_operator)
    known_countries = sorted(countries) if report else []  # before this event's, for the alert
    _remember(countries, place.country, now, MAX_COUNTRIES)
    _remember(operators, network, now, MAX_OPERATORS)
    seen["n"] = min(BASELINE_EVENTS, seen["n"] + 1)
    seen["first"] = min(seen["first"], now)
    seen["last"] = max(seen["last"], now)
    if not report:
        return []
    if ctx.declared_network(event) is not None:
        return []  # the seller allowlisted this network for the principal
    return [_finding(event, ctx, ip, place, new_country, known_countries)]


def _finding(
    event: Event, ctx: Context, ip: str, place: geo.Place, new_country: bool, known: list[str]
) -> Finding:
    actor = event["actor"]
    label = _label(place)
    where = f"country {place.country}" if new_country else f"network {label}"
    operator = f" ({label})" if label else ""
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{event['account_id']}|{actor['principal_id']}",
        title=f"Provider {actor['provider_id']} principal {actor['principal_id']} acted from a new {where}",
        summary=(
            f"Principal {actor['principal_id']} of provider {actor['provider_id']} performed"
            f" {event['action']} on account {event['account_id']} from {ip}, in"
            f" {place.country or 'an unknown country'}{operator}: first use of this"
            f" {'country' if new_country else 'network operator'} in {MEMORY_DAYS} days."
            f" Countries seen before: {', '.join(known) or 'none'}."
        ),
        response=RESPONSE,
    )


def _network(place: geo.Place) -> str | None:
    """The key a network is remembered by: `AS<number>` when known, else the operator's name."""
    return f"AS{place.asn}" if place.asn is not None else place.asn_name


def _label(place: geo.Place) -> str:
    if place.asn is not None:
        return f"AS{place.asn} {place.asn_name}" if place.asn_name else f"AS{place.asn}"
    return place.asn_name or ""


def _forget(items: dict[str, int], now: int) -> None:
    # a look at the values first: nothing to forget is the common case, and costs no list (nor a
    # call of `min`, which cost more than the loop over the few places a principal uses)
    cutoff = now - _MEMORY_MS
    for last in items.values():
        if last < cutoff:
            for name in [n for n, at in items.items() if at < cutoff]:
                del items[name]
            return


def _remember(items: dict[str, int], name: str | None, now: int, limit: int) -> None:
    if name is None:
        return
    last = items.get(name)
    if last is None or now > last:
        items[name] = now
    while len(items) > limit:
        del items[min(items, key=lambda n: (items[n], n))]


def _sweep(state: dict[str, Any], principals: dict[str, Any], now: int) -> None:
    """Once an event-time hour, drop principals silent for `MEMORY_DAYS`."""
    if now < state.get("swept", 0) + _HOUR_MS:
        return
    state["swept"] = now
    for principal in [p for p, seen in principals.items() if seen["last"] < now - _MEMORY_MS]:
        del principals[principal]
