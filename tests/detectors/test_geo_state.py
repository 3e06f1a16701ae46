"""The IP and geography rules keep small, JSON-serializable state and decide the same way twice."""

from __future__ import annotations

from typing import Any

import orjson

from detectors import Context
from detectors.rules import impossible_travel, ip_churn
from detectors.rules import new_country_or_asn as geo_novelty
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms, normalize

START = 1_793_606_400_000  # 2026-11-02T08:00:00Z
RULES = (geo_novelty, ip_churn, impossible_travel)
# Public /24s in many countries and networks (one address each), spread over the IPv4 space.
SPRAY = [f"{a}.{b}.{(a * 7 + b) % 256}.10" for a in range(2, 223, 3) for b in (17, 101, 203)]


def event(n: int, ip: str, at: int, principal: str = "p1") -> Event:
    return normalize(
        {
            "event_id": f"e-{n}",
            "occurred_at": format_ms(at),
            "account_id": "A0001SELLER",
            "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": principal},
            "action": "report.download",
            "source": {"ip": ip},
        }
    )


def run(events: list[Event]) -> tuple[list[Any], dict[str, Any]]:
    ctx = Context(auth={"grants": {}}, config=DetectionConfig())
    states: dict[str, Any] = {rule.DETECTOR: {} for rule in RULES}
    found = []
    for e in events:
        for rule in RULES:
            found += [
                (e["event_id"], f.detector, f.key, f.window)
                for f in rule.detect(e, states[rule.DETECTOR], ctx)
            ]
    return found, states


def test_one_principal_spraying_hundreds_of_networks_keeps_bounded_state() -> None:
    events = [event(n, ip, START + n * 20_000) for n, ip in enumerate(SPRAY * 2)]
    found, states = run(events)
    assert {d for _, d, _, _ in found} == {"new_country_or_asn", "ip_churn", "impossible_travel"}
    limit = DetectionConfig().ip_churn_per_hour
    assert len(states["ip_churn"]["principals"]["p1"]) <= 2 * limit + 2
    seen = states["new_country_or_asn"]["principals"]["p1"]
    assert len(seen["countries"]) <= geo_novelty.MAX_COUNTRIES
    assert len(seen["operators"]) <= geo_novelty.MAX_OPERATORS
    assert len(orjson.dumps(states)) < 10_000
    assert orjson.loads(orjson.dumps(states)) == states


def test_principals_that_go_quiet_are_dropped() -> None:
    day = 86_400_000
    events = [event(n, "91.40.249.39", START + n * 60_000, principal=f"p{n}") for n in range(300)]
    events.append(event(300, "91.40.249.39", START + 100 * day, principal="late"))
    _, states = run(events)
    for rule in RULES:
        assert list(states[rule.DETECTOR]["principals"]) == ["late"], rule.DETECTOR


def test_same_events_same_findings_and_state() -> None:
    events = [event(n, ip, START + n * 45_000, principal=f"p{n % 3}") for n, ip in enumerate(SPRAY)]
    assert run(events) == run(events)
