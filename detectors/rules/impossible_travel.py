"""One provider principal in two countries too far apart for the time between its events.

Why: when a principal acts from one country and, minutes later, from a country no plane could
reach in that time, two parties hold its credential: the provider and someone else.

What counts: events with `source.ip` whose actor is a provider, keyed per principal within the
account; seller and Amazon actors are ignored (sellers travel, and their logins are not a
delegated-access risk). Each located event is compared with the principal's previous one (by
`seq`; a late event compares by the absolute time between them). Ignored: addresses without a
country or a country without a centroid (detectors/data/country_centroids.csv), and moves between
two addresses inside networks the seller allowlisted for the principal (its declared offices,
detectors/networks.py; geoip data sometimes splits one office range between countries).

The distance is a lower bound: centroid distance (haversine) minus each country's reach (see
detectors/geo.py), so the rule fires only when even the closest places of the two countries are
further apart than `travel_max_kmh` allows. Neighbours of large countries (US/CA/MX, RU and its
neighbours) never fire at country resolution; a principal's first visit there is what
new_country_or_asn reports. A flagged jump opens an incident that remembers the country the
principal left; until the incident closes, a jump back into that country is its other side and
raises nothing (however fast), while every jump away fires again. An incident closes once its
last flagged jump is older than the horizon: the longest trip that could still be impossible
(half the Earth's circumference at `travel_max_kmh`, 20 hours at 1000 km/h). State per
principal: its last country, time and event id, and an open incident's country and time; dropped
once older than the horizon. The alert names both legs: the event of the previous position first,
then the event that jumped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from detectors import geo, responses
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "impossible_travel"
SEVERITY = "high"
RESPONSE = (
    "Treat the principal's credential as shared or stolen until the provider explains both locations.",
    responses.ROTATE,
    "Ask the provider which of the two locations is its own; revoke the grant until it answers.",
    responses.PRESERVE,
)

HALF_EARTH_KM: Final = 20_015.0
_HOUR_MS: Final = 3_600_000


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    ip = event.get("source", {}).get("ip")
    if actor["type"] != "provider" or ip is None:
        return []
    country = geo.lookup(ip).country
    if country is None or country not in geo.centroids():
        return []
    now = ctx.epoch_ms(event["occurred_at"])
    max_kmh = max(1.0, ctx.config.travel_max_kmh)
    horizon_ms = int(HALF_EARTH_KM / max_kmh * _HOUR_MS)
    principals: dict[str, dict[str, Any]] = state.setdefault("principals", {})
    _sweep(state, principals, now, horizon_ms)
    last = principals.get(actor["principal_id"])
    declared = ctx.declared_network(event) is not None
    here: dict[str, Any] = {
        "country": country,
        "at": now,
        "declared": declared,
        "id": event["event_id"],
    }
    if last is not None and last["at"] > now:  # a late event: keep the newest position
        here = {
            "country": last["country"],
            "at": last["at"],
            "declared": last.get("declared", False),
            "id": last.get("id"),
        }
    if last is not None and "left" in last and now - last["flagged_at"] <= horizon_ms:
        here["left"], here["flagged_at"] = last["left"], last["flagged_at"]  # an open incident
    principals[actor["principal_id"]] = here
    if last is None or last["country"] == country or (declared and last.get("declared", False)):
        return []  # nowhere new, or between two networks the seller allowlisted for the principal
    if here.get("left") == country:  # back where the incident started: its other side
        return []
    hours = abs(now - last["at"]) / _HOUR_MS
    km = geo.min_distance_km(last["country"], country) or 0.0
    if km <= max_kmh * hours:
        return []
    here.setdefault("left", last["country"])
    here["flagged_at"] = now
    first = f" (event {last['id']})" if last.get("id") else ""
    speed = "instantly" if hours == 0 else f"at {km / hours:,.0f} km/h or more"
    gap = f"{hours * 3600:,.0f} seconds" if hours < 1 / 60 else f"{hours * 60:,.0f} minutes"
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{actor['principal_id']}",
            title=f"Provider {actor['provider_id']} principal {actor['principal_id']} acted from {last['country']} and {country} too close in time",
            summary=(
                f"Principal {actor['principal_id']} of provider {actor['provider_id']} acted on"
                f" account {event['account_id']} from {last['country']}{first} and then, {gap} later,"
                f" from {country} ({ip}, {event['action']}): at least {km:,.0f} km"
                f" apart, so travelling {speed}, over the {max_kmh:,.0f} km/h limit."
            ),
            response=RESPONSE,
            related=(last["id"],) if last.get("id") else (),  # the first leg, before this one
        )
    ]


def _sweep(
    state: dict[str, Any], principals: dict[str, dict[str, Any]], now: int, horizon_ms: int
) -> None:
    """Once an event-time hour, drop positions too old to make any trip impossible."""
    if now < state.get("swept", 0) + _HOUR_MS:
        return
    state["swept"] = now
    for principal in [p for p, last in principals.items() if last["at"] < now - horizon_ms]:
        del principals[principal]
