"""One session id used from two distant places at once: a stolen session token.

Why: a session (the gateway's `source.session_id`) belongs to one login on one client. The
same session acting from two countries far apart within minutes means its token was copied:
the provider's user and someone else are using it at the same time. impossible_travel compares
a principal's consecutive events on one account; this compares one session's events across
every account of the provider, in either arrival order.

What counts: provider events with a `source.session_id` and a `source.ip` whose country is
known (detectors/geo.py), keyed by provider and session across accounts. Two events of one
session within `session_overlap_minutes` of each other (event time, whichever came first) from
countries at least `session_min_km` apart (the lower bound of detectors/geo.py: neighbours
never qualify) fire, unless both addresses are in networks the seller allowlisted for the
principal (detectors/networks.py). A session's use from one country is kept as the span from its
first to its last event there, so the order in which the two places' events arrive does not
matter (an event may arrive up to `windows.LATENESS_MS` late).

The alert names both legs (key: provider and session; window: the suppression bucket of the
earlier leg). State per session: per country, the span of its use (first and last time and
event, whether every address was allowlisted, the last account); sessions unused for the overlap
plus the lateness are swept, at most `MAX_SESSIONS` kept per provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import geo, responses
from detectors.windows import LATENESS_MS, bucket
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "concurrent_sessions"
SEVERITY = "high"
MAX_SESSIONS = 5000
MAX_PLACES = 8
RESPONSE = (
    "End the session everywhere (sign the principal out, revoke its SP-API tokens): two parties"
    " hold it at once.",
    responses.ROTATE,
    responses.CONFIRM,
    responses.PRESERVE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    source = event.get("source", {})
    session, ip = source.get("session_id"), source.get("ip")
    if actor["type"] != "provider" or session is None or ip is None:
        return []
    country = geo.lookup(ip).country
    if country is None or country not in geo.centroids():
        return []
    cfg = ctx.config
    now = ctx.epoch_ms(event["occurred_at"])
    overlap = max(1, cfg.session_overlap_minutes) * 60_000
    sessions: dict[str, dict[str, list[Any]]] | None = state.get("s")
    if sessions is None:
        sessions = state["s"] = {}
    _sweep(state, sessions, now, overlap)
    # per country: [first ms, last ms, id of the first, id of the last, all declared, an account]
    places = sessions.get(session)
    if places is None:
        places = sessions[session] = {}
    span = places.get(country)
    # Whether the address is in a network the seller allowlisted is asked only where the answer
    # counts: for a new place's span, or while a span (this place's or another's) has had only
    # allowlisted addresses; elsewhere every use below comes out the same either way.
    declared = (
        span is None or span[4] or (len(places) > 1 and any(p[4] for p in places.values()))
    ) and ctx.declared_network(event) is not None
    others = [
        [c, *other]
        for c, other in places.items()
        if c != country
        and other[0] - overlap <= now <= other[1] + overlap
        and not (declared and other[4])
        and (geo.min_distance_km(c, country) or 0.0) >= cfg.session_min_km
    ]
    if span is None:
        places[country] = [
            now,
            now,
            event["event_id"],
            event["event_id"],
            declared,
            event["account_id"],
        ]
    else:
        if now < span[0]:
            span[0], span[2] = now, event["event_id"]
        if now >= span[1]:
            span[1], span[3], span[5] = now, event["event_id"], event["account_id"]
        span[4] = span[4] and declared
    while len(places) > MAX_PLACES:
        del places[min(places, key=lambda c: places[c][1])]
    if not others:
        return []

    def nearest(o: list[Any]) -> tuple[int, str]:
        """The other country's event closest in time to this one: (ms, event id)."""
        return (o[1], o[3]) if abs(o[1] - now) <= abs(o[2] - now) else (o[2], o[4])

    other = min(others, key=lambda o: abs(nearest(o)[0] - now))
    other_at, other_id = nearest(other)
    km = geo.min_distance_km(other[0], country) or 0.0
    gap = abs(now - other_at) // 1000
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{actor['provider_id']}|{session}",
            window=bucket(format_ms(min(now, other_at)), cfg.suppression_minutes),
            title=f"Session {session} of provider {actor['provider_id']} used from {other[0]} and {country} at once",
            summary=(
                f"Session {session} of provider {actor['provider_id']} (principal"
                f" {actor['principal_id']}) acted from {other[0]} (event {other_id},"
                f" {format_ms(other_at)}, last on account {other[6]}) and from {country} ({ip}) on"
                f" account {event['account_id']} (event {event['event_id']}, {event['action']})"
                f" {gap} seconds apart: at least {km:,.0f} km, so two parties hold the session."
            ),
            response=RESPONSE,
            related=tuple(nearest(o)[1] for o in sorted(others, key=lambda o: nearest(o)[0])),
        )
    ]


def _sweep(
    state: dict[str, Any], sessions: dict[str, dict[str, list[Any]]], now: int, overlap: int
) -> None:
    """Every overlap window of event time, drop sessions unused for longer than an event may
    arrive late (`windows.LATENESS_MS`) past the overlap; at most `MAX_SESSIONS` are kept."""
    if now < state.get("swept", 0) + overlap and len(sessions) <= MAX_SESSIONS:
        return
    state["swept"] = max(now, state.get("swept", 0))
    horizon = state["swept"] - overlap - LATENESS_MS
    for gone in [
        s for s, places in sessions.items() if max(p[1] for p in places.values()) < horizon
    ]:
        del sessions[gone]
    while len(sessions) > MAX_SESSIONS:
        del sessions[min(sessions, key=lambda s: max(p[1] for p in sessions[s].values()))]
