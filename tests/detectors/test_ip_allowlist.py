"""ip_outside_allowlist: true positives and false positives side by side (panther-analysis style).

Each case is the account's grant history (applied in order through `pipeline.authorization.apply`) and
one provider action; the rule must fire on exactly the true positives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from detectors import ALL, Context
from detectors.rules import ip_outside_allowlist as ip_allowlist
from pipeline.alert import MAX_EVIDENCE, Finding, alert_id, fold
from pipeline.authorization import AccountGrants
from pipeline.authorization import apply_grant as apply
from pipeline.config import DetectionConfig
from pipeline.contract import SEVERITIES
from pipeline.event import Event, normalize

ACCOUNT = "A0001SELLER"
OFFICE = ["185.12.40.0/24", "2001:db8:40::/48"]


def grant(grant_id: str = "g-1", **extra: Any) -> dict[str, Any]:
    """A permission.grant event body for prov-003 (office allowlist unless overridden)."""
    return {
        "action": "permission.grant",
        "grant": {"grant_id": grant_id, "provider_id": "prov-003", "ip_allowlist": OFFICE, **extra},
    }


def revoke(grant_id: str = "g-1") -> dict[str, Any]:
    return {"action": "permission.revoke", "grant": {"grant_id": grant_id}}


def action(ip: str | None = "185.12.40.7", **extra: Any) -> dict[str, Any]:
    """A listing update by prov-003-user-1 from `ip` (None: no source ip)."""
    doc: dict[str, Any] = {
        "action": "listing.update",
        "marketplace": "DE",
        "actor": {"type": "provider", "provider_id": "prov-003", "principal_id": "prov-003-user-1"},
        "resource": {"type": "listing", "id": "SKU-01-0042"},
    }
    if ip is not None:
        doc["source"] = {"ip": ip, "user_agent": "python-sp-api/1.8.0"}
    doc.update(extra)
    return doc


def _event(body: dict[str, Any], event_id: str, at: str) -> Event:
    doc = {
        "event_id": event_id,
        "occurred_at": at,
        "account_id": ACCOUNT,
        "actor": {"type": "seller", "principal_id": f"{ACCOUNT}-owner"},
        **body,
    }
    return normalize(doc)


def decide(event: Event, grants: AccountGrants) -> Finding | None:
    """The rule's finding on `event` against `grants` (it is stateless), or None."""
    ctx = Context(auth={"grants": grants}, config=DetectionConfig())
    found = ip_allowlist.detect(event, {}, ctx)
    assert len(found) <= 1
    return found[0] if found else None


@dataclass
class Case:
    name: str
    history: list[dict[str, Any]]
    event: dict[str, Any]
    fires: bool
    at: str = "2026-11-02T14:05:09.120+01:00"
    notes: str = field(default="")

    def replay(self) -> tuple[Event, AccountGrants]:
        grants: AccountGrants = {}
        for i, body in enumerate(self.history):
            apply(grants, _event(body, f"hist-{i}", f"2026-11-01T0{i}:00:00Z"))
        return _event(self.event, "evt-1", self.at), grants


TRUE_POSITIVES = [
    Case("outside the allowlist", [grant()], action("5.61.20.9"), True),
    Case("outside, IPv6", [grant()], action("2001:db8:99::1"), True),
    Case("outside, IPv4-mapped IPv6", [grant()], action("::ffff:5.61.20.9"), True),
    Case(
        "outside every live grant",
        [grant(), grant("g-2", ip_allowlist=["81.3.0.0/16"])],
        action("5.61.20.9"),
        True,
    ),
    Case(
        "a revoked grant's IP does not count",
        [grant(), grant("g-2", ip_allowlist=["5.61.20.0/24"]), revoke("g-2")],
        action("5.61.20.9"),
        True,
    ),
    Case(
        "an expired grant's IP does not count",
        [grant(), grant("g-2", ip_allowlist=["5.61.20.0/24"], valid_until="2026-11-02T00:00:00Z")],
        action("5.61.20.9"),
        True,
    ),
    Case(
        "grant naming the principal",
        [grant(principals=["prov-003-user-1"])],
        action("5.61.20.9"),
        True,
    ),
    Case(
        "a read is still access",
        [grant()],
        action(
            "5.61.20.9",
            action="report.download",
            marketplace=None,
            resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
        ),
        True,
    ),
    Case("failed attempts count too", [grant()], action("5.61.20.9", outcome="denied"), True),
]

FALSE_POSITIVES = [
    Case("inside the allowlist", [grant()], action("185.12.40.7"), False),
    Case("inside, IPv6", [grant()], action("2001:db8:40::17"), False),
    Case("inside, IPv4-mapped IPv6", [grant()], action("::ffff:185.12.40.7"), False),
    Case("no grant at all (the scope rule's business)", [], action("5.61.20.9"), False),
    Case(
        "grant of another provider only",
        [grant(provider_id="prov-004")],
        action("5.61.20.9"),
        False,
    ),
    Case(
        "grant for other principals only",
        [grant(principals=["prov-003-user-0"])],
        action("5.61.20.9"),
        False,
    ),
    Case("revoked grant (quiet for this rule)", [grant(), revoke()], action("5.61.20.9"), False),
    Case("expired grant", [grant(valid_until="2026-11-02T00:00:00Z")], action("5.61.20.9"), False),
    Case("grant without an allowlist", [grant(ip_allowlist=None)], action("5.61.20.9"), False),
    Case(
        "a second grant allows the IP",
        [grant(), grant("g-2", ip_allowlist=["5.61.20.0/24"])],
        action("5.61.20.9"),
        False,
    ),
    Case(
        "a second grant has no allowlist",
        [grant(), grant("g-2", ip_allowlist=None)],
        action("5.61.20.9"),
        False,
    ),
    Case(
        "seller actor",
        [grant()],
        action("5.61.20.9", actor={"type": "seller", "principal_id": "owner"}),
        False,
    ),
    Case(
        "amazon actor",
        [grant()],
        action("5.61.20.9", actor={"type": "amazon", "principal_id": "support"}),
        False,
    ),
    Case("no source ip", [grant()], action(None), False),
    Case("source without ip", [grant()], action(None, source={"user_agent": "curl/8"}), False),
    Case(
        "re-granted with the new office",
        [grant(), grant(ip_allowlist=["5.61.20.0/24"])],
        action("5.61.20.9"),
        False,
    ),
]


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=f"tp: {c.name}") for c in TRUE_POSITIVES]
    + [pytest.param(c, id=f"fp: {c.name}") for c in FALSE_POSITIVES],
)
def test_rule(case: Case) -> None:
    event, grants = case.replay()
    finding = decide(event, grants)
    assert (finding is not None) is case.fires
    if finding is not None:
        assert finding.detector == ip_allowlist.DETECTOR == "ip_outside_allowlist"
        assert finding.severity in SEVERITIES
        assert event["source"]["ip"] in finding.title
        assert finding.response


def test_detector_is_registered() -> None:
    assert "ip_outside_allowlist" in dict(ALL)


def test_finding_names_the_grants_and_networks() -> None:
    event, grants = Case(
        "", [grant(), grant("g-2", ip_allowlist=["81.3.0.0/16"])], action("5.61.20.9"), True
    ).replay()
    finding = decide(event, grants)
    assert finding is not None
    assert "g-1, g-2" in finding.summary
    assert "185.12.40.0/24" in finding.summary and "81.3.0.0/16" in finding.summary
    assert finding.key == f"{ACCOUNT}|prov-003-user-1|5.61.20.9"
    assert finding.window == "2026-11-02T13"  # UTC hour of occurred_at


def test_alert_id_is_deterministic() -> None:
    case = TRUE_POSITIVES[0]
    first_event, grants = case.replay()
    again_event, again_grants = case.replay()
    first = decide(first_event, grants)
    again = decide(again_event, again_grants)
    assert first is not None and again is not None
    assert first == again
    ids = {alert_id(f.detector, f.key, f.window) for f in (first, again)}
    assert len(ids) == 1
    assert fold(None, first, first_event)["alert_id"] == ids.pop()


def test_alert_id_groups_by_principal_ip_and_hour() -> None:
    def finding_at(at: str, ip: str = "5.61.20.9") -> Any:
        event, grants = Case("", [grant()], action(ip), True, at=at).replay()
        found = decide(event, grants)
        assert found is not None
        return alert_id(found.detector, found.key, found.window)

    same_hour = {
        finding_at("2026-11-02T14:05:00Z"),
        finding_at("2026-11-02T14:59:59.999Z"),
        finding_at("2026-11-02T15:30:00+01:00"),
    }
    assert len(same_hour) == 1
    assert finding_at("2026-11-02T15:00:00Z") not in same_hour
    assert finding_at("2026-11-02T14:05:00Z", ip="5.61.20.10") not in same_hour


def test_fold_counts_each_event_once() -> None:
    case = TRUE_POSITIVES[0]
    _, grants = case.replay()
    events = [
        _event(action("5.61.20.9"), f"evt-{i}", at)
        for i, at in enumerate(
            ["2026-11-02T14:10:00Z", "2026-11-02T14:02:00Z", "2026-11-02T14:40:00Z"]
        )
    ]
    alert = None
    for event in [events[0], events[0], events[1], events[0], events[2], events[1], events[2]]:
        finding = decide(event, grants)
        assert finding is not None
        folded = fold(alert, finding, event)
        if alert is not None and event["event_id"] in alert["evidence_event_ids"]:
            assert folded == alert  # a redelivered event leaves the alert as it was
        alert = folded
    assert alert is not None
    assert alert["count"] == 3
    assert alert["evidence_event_ids"] == ["evt-0", "evt-1", "evt-2"]
    assert alert["first_seen"] == "2026-11-02T14:02:00.000Z"
    assert alert["last_seen"] == "2026-11-02T14:40:00.000Z"
    assert alert["detector"] == "ip_outside_allowlist"
    assert (alert["account_id"], alert["provider_id"], alert["principal_id"]) == (
        ACCOUNT,
        "prov-003",
        "prov-003-user-1",
    )
    assert alert["severity"] == ip_allowlist.SEVERITY
    assert alert["response"] == list(ip_allowlist.RESPONSE)


def test_fold_caps_evidence_but_keeps_counting() -> None:
    _, grants = TRUE_POSITIVES[0].replay()
    alert = None
    for i in range(MAX_EVIDENCE + 5):
        event = _event(action("5.61.20.9"), f"evt-{i}", f"2026-11-02T14:{i % 60:02d}:00Z")
        finding = decide(event, grants)
        assert finding is not None
        alert = fold(alert, finding, event)
    assert alert is not None
    assert alert["count"] == MAX_EVIDENCE + 5
    assert len(alert["evidence_event_ids"]) == MAX_EVIDENCE
