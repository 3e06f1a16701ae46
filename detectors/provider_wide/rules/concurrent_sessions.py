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
principal (detectors/networks.py).

The alert names both legs (key: provider and session; window: the suppression bucket of the
earlier leg). State per session: the latest event per country within the overlap window; sessions
older than that are swept, at most `MAX_SESSIONS` kept per provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import geo, responses
from detectors.windows import bucket, epoch_ms
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
    now = epoch_ms(event["occurred_at"])
    overlap = max(1, cfg.session_overlap_minutes) * 60_000
    sessions: dict[str, list[list[Any]]] = state.setdefault("s", {})
    _sweep(state, sessions, now, overlap)
    declared = ctx.declared_network(event) is not None
    places = [p for p in sessions.get(session, []) if abs(p[0] - now) <= overlap or p[1] == country]
    others = [
        p
        for p in places
        if p[1] != country
        and abs(p[0] - now) <= overlap
        and not (declared and p[3])
        and (geo.min_distance_km(p[1], country) or 0.0) >= cfg.session_min_km
    ]
    mine = [now, country, event["event_id"], declared, event["account_id"]]
    newest = max([mine, *(p for p in places if p[1] == country)], key=lambda p: p[0])
    places = [p for p in places if p[1] != country] + [newest]
    sessions[session] = sorted(places)[-MAX_PLACES:]
    if not others:
        return []
    other = min(others, key=lambda p: abs(p[0] - now))
    km = geo.min_distance_km(other[1], country) or 0.0
    gap = abs(now - other[0]) // 1000
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{actor['provider_id']}|{session}",
            window=bucket(format_ms(min(now, other[0])), cfg.suppression_minutes),
            title=f"Session {session} of provider {actor['provider_id']} used from {other[1]} and {country} at once",
            summary=(
                f"Session {session} of provider {actor['provider_id']} (principal"
                f" {actor['principal_id']}) acted from {other[1]} on account {other[4]} (event"
                f" {other[2]}, {format_ms(other[0])}) and from {country} ({ip}) on account"
                f" {event['account_id']} (event {event['event_id']}, {event['action']}) {gap} seconds"
                f" apart: at least {km:,.0f} km, so two parties hold the session."
            ),
            response=RESPONSE,
            related=tuple(p[2] for p in sorted(others) if p[2] != event["event_id"]),
        )
    ]


def _sweep(state: dict[str, Any], sessions: dict[str, list[list[Any]]], now: int, overlap: int) -> None:
    """Every overlap window of event time, drop sessions with nothing left in the window."""
    if now < state.get("swept", 0) + overlap and len(sessions) <= MAX_SESSIONS:
        return
    state["swept"] = now
    for gone in [s for s, places in sessions.items() if max(p[0] for p in places) < now - overlap]:
        del sessions[gone]
    while len(sessions) > MAX_SESSIONS:
        del sessions[min(sessions, key=lambda s: max(p[0] for p in sessions[s]))]
