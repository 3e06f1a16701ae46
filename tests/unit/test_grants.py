"""Authorization state derived from permission.* events, and the questions detectors ask of it."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.authorization import (
    AccountGrants,
    allows_ip,
    allows_scope,
    covering,
    covers_actor,
    is_live,
)
from pipeline.authorization import (
    apply_grant as apply,
)
from pipeline.event import Event, normalize

ACCOUNT = "A0001SELLER"
OWNER = {"type": "seller", "principal_id": f"{ACCOUNT}-owner"}


def grant_event(event_id: str = "g-evt-1", at: str = "2026-11-02T08:00:00Z", **grant: Any) -> Event:
    body = {"grant_id": "g-1", "provider_id": "prov-003", **grant}
    return normalize(
        {
            "event_id": event_id,
            "occurred_at": at,
            "account_id": ACCOUNT,
            "actor": OWNER,
            "action": "permission.grant",
            "grant": body,
        }
    )


def revoke_event(
    grant_id: str = "g-1",
    event_id: str = "r-evt-1",
    at: str = "2026-11-02T12:00:00Z",
    outcome: str = "success",
) -> Event:
    return normalize(
        {
            "event_id": event_id,
            "occurred_at": at,
            "account_id": ACCOUNT,
            "actor": OWNER,
            "action": "permission.revoke",
            "grant": {"grant_id": grant_id},
            "outcome": outcome,
        }
    )


def provider_event(
    principal: str = "prov-003-user-1", at: str = "2026-11-02T10:00:00Z", provider: str = "prov-003"
) -> Event:
    return normalize(
        {
            "event_id": "a-1",
            "occurred_at": at,
            "account_id": ACCOUNT,
            "marketplace": "DE",
            "actor": {"type": "provider", "provider_id": provider, "principal_id": principal},
            "action": "listing.update",
        }
    )


# -- apply --------------------------------------------------------------------------------------


def test_grant_adds_a_grant_with_its_provenance() -> None:
    grants: AccountGrants = {}
    event = grant_event(scopes=["listing.*"])
    assert apply(grants, event) is True
    grant = grants["g-1"]
    assert grant["provider_id"] == "prov-003"
    assert grant["scopes"] == ["listing.*"]
    assert grant["granted_at"] == "2026-11-02T08:00:00.000Z"
    assert grant["granted_by_event"] == "g-evt-1"
    assert "granted_at" not in event["grant"]  # the event itself is not modified


def test_grant_with_the_same_id_replaces_the_grant() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event(scopes=["listing.*"]))
    apply(grants, grant_event("g-evt-2", "2026-11-03T08:00:00Z", scopes=["report.download"]))
    assert list(grants) == ["g-1"]
    assert grants["g-1"]["scopes"] == ["report.download"]
    assert grants["g-1"]["granted_by_event"] == "g-evt-2"


def test_a_new_grant_after_a_revoke_is_live_again() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    apply(grants, revoke_event())
    apply(grants, grant_event("g-evt-2", "2026-11-03T08:00:00Z"))
    assert is_live(grants["g-1"], "2026-11-03T09:00:00.000Z")


def test_failed_or_denied_grant_events_change_nothing() -> None:
    grants: AccountGrants = {}
    for outcome in ("failure", "denied"):
        event = grant_event()
        event["outcome"] = outcome
        assert apply(grants, event) is False
    assert grants == {}


def test_revoke_marks_the_grant_revoked() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    before = grants["g-1"]
    snapshot = dict(before)
    assert apply(grants, revoke_event()) is True
    assert grants["g-1"]["revoked_at"] == "2026-11-02T12:00:00.000Z"
    assert grants["g-1"]["revoked_by_event"] == "r-evt-1"
    assert before == snapshot  # the previous value (which a table may still hold) is untouched


def test_revoke_twice_unknown_or_failed_changes_nothing() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    assert apply(grants, revoke_event(outcome="denied")) is False
    assert "revoked_at" not in grants["g-1"]
    assert apply(grants, revoke_event()) is True
    assert apply(grants, revoke_event(event_id="r-evt-2", at="2026-11-02T13:00:00Z")) is False
    assert grants["g-1"]["revoked_by_event"] == "r-evt-1"
    assert apply(grants, revoke_event("g-unknown")) is False
    assert "g-unknown" not in grants


def test_other_actions_change_nothing() -> None:
    grants: AccountGrants = {}
    assert apply(grants, provider_event()) is False
    assert grants == {}


# -- is_live ------------------------------------------------------------------------------------


def test_is_live_without_expiry() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    assert is_live(grants["g-1"], "2099-01-01T00:00:00.000Z")


@pytest.mark.parametrize(
    ("at", "live"),
    [
        ("2026-11-30T22:59:59.999Z", True),
        ("2026-11-30T23:00:00.000Z", False),  # valid_until is exclusive
        ("2026-12-01T00:00:00.000Z", False),
    ],
)
def test_is_live_until_valid_until(at: str, live: bool) -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event(valid_until="2026-12-01T00:00:00+01:00"))  # stored as 23:00Z
    assert grants["g-1"]["valid_until"] == "2026-11-30T23:00:00.000Z"
    assert is_live(grants["g-1"], at) is live


def test_revoked_grant_is_not_live() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    apply(grants, revoke_event())
    assert not is_live(grants["g-1"], "2026-11-02T10:00:00.000Z")


# -- covers_actor / covering --------------------------------------------------------------------


def test_covers_actor_without_principals_covers_every_principal_of_the_provider() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    grant = grants["g-1"]
    assert covers_actor(grant, "prov-003", "prov-003-user-1")
    assert covers_actor(grant, "prov-003", "anyone")
    assert not covers_actor(grant, "prov-004", "prov-003-user-1")


def test_covers_actor_with_principals() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event(principals=["prov-003-user-0", "prov-003-user-1"]))
    grant = grants["g-1"]
    assert covers_actor(grant, "prov-003", "prov-003-user-1")
    assert not covers_actor(grant, "prov-003", "prov-003-user-9")
    assert not covers_actor(grant, "prov-004", "prov-003-user-1")


def test_covering_lists_live_grants_of_the_acting_principal() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event(principals=["prov-003-user-1"]))
    apply(grants, grant_event("g-evt-2", grant_id="g-2", valid_until="2026-11-02T09:00:00Z"))
    apply(grants, grant_event("g-evt-3", grant_id="g-3", provider_id="prov-004"))
    apply(grants, grant_event("g-evt-4", grant_id="g-4"))
    apply(grants, revoke_event("g-4", "r-4", "2026-11-02T09:30:00Z"))
    live = covering(grants, provider_event())
    assert [g["grant_id"] for g in live] == ["g-1"]
    assert covering(grants, provider_event(principal="prov-003-user-2")) == []
    early = provider_event(at="2026-11-02T08:30:00Z")
    # Expiry is judged at event time; a revoke applies from when it is sequenced (log order).
    assert sorted(g["grant_id"] for g in covering(grants, early)) == ["g-1", "g-2"]


def test_covering_is_empty_for_sellers() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    seller = grant_event("x")
    assert covering(grants, seller) == []


def test_allows_scope() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event(scopes=["listing.*", "report.download"]))
    grant = grants["g-1"]
    assert allows_scope(grant, "listing.price_change")
    assert allows_scope(grant, "report.download")
    assert not allows_scope(grant, "funds.refund")
    apply(grants, grant_event(grant_id="g-2"))
    assert not allows_scope(grants["g-2"], "listing.update")  # no scopes: nothing


# -- allows_ip ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowlist", "ip", "allowed"),
    [
        (["185.12.40.0/24"], "185.12.40.7", True),
        (["185.12.40.0/24"], "185.12.41.7", False),
        (["185.12.40.7/32"], "185.12.40.7", True),
        (["185.12.40.7"], "185.12.40.7", True),  # a bare address is a /32
        (["10.0.0.0/8", "185.12.40.0/24"], "10.200.3.4", True),
        (["2001:db8::/32"], "2001:db8:1::5", True),
        (["2001:db8::/32"], "2001:db9::5", False),
        (["2001:DB8::/32"], "2001:db8::1", True),  # stored normalized
        (["185.12.40.0/24"], "::ffff:185.12.40.7", True),  # IPv4-mapped IPv6 matches its IPv4
        (["185.12.40.0/24"], "::ffff:185.12.41.7", False),
        (["185.12.40.0/24"], "2001:db8::1", False),  # other family
        (["::/0"], "185.12.40.7", False),  # an IPv6 net never admits a plain IPv4 address
        (["0.0.0.0/0"], "2001:db8::1", False),
        ([], "185.12.40.7", False),  # an empty allowlist admits nothing
    ],
)
def test_allows_ip(allowlist: list[str], ip: str, allowed: bool) -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event(ip_allowlist=allowlist))
    event_ip = normalize({**_ip_probe(), "source": {"ip": ip}})["source"]["ip"]
    assert allows_ip(grants["g-1"], event_ip) is allowed


def test_no_allowlist_allows_anywhere() -> None:
    grants: AccountGrants = {}
    apply(grants, grant_event())
    for ip in ("185.12.40.7", "2001:db8::1", "::ffff:1.2.3.4", "127.0.0.1"):
        assert allows_ip(grants["g-1"], ip)


def _ip_probe() -> dict[str, Any]:
    return {
        "event_id": "probe",
        "occurred_at": "2026-11-02T10:00:00Z",
        "account_id": ACCOUNT,
        "actor": {"type": "provider", "provider_id": "prov-003", "principal_id": "u"},
        "action": "auth.login",
    }
