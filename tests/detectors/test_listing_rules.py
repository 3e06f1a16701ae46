"""The listing, scope, approval, sensitive-action and off-hours rules beyond the fixture cases:
what their alerts say, how repeats fold, and that their state stays small."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from detectors import ALL
from detectors.grants import within_hours
from detectors.prices import price_move
from detectors.rules import bulk_listing_burst as bulk_edits
from detectors.rules import price_change_over_limit as price_limit
from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import normalize

ACCOUNT = "A0001SELLER"
OWNER = {"type": "seller", "principal_id": f"{ACCOUNT}-owner"}
AGENCY = {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Account:
    """One account's state, fed events like the detect agent feeds it."""

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.state = new_state()
        self.config = config or DetectionConfig()
        self.n = 0

    def send(
        self, action: str, at: datetime = T0, actor: dict[str, str] | None = None, **fields: Any
    ) -> list[Finding]:
        self.n += 1
        doc = {
            "event_id": f"e-{self.n}",
            "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "account_id": ACCOUNT,
            "actor": actor
            or (OWNER if action.startswith(("permission.", "approval.")) else AGENCY),
            "action": action,
            **fields,
        }
        return observe(self.state, normalize(doc), self.config)

    def grant(self, **grant: Any) -> None:
        self.send(
            "permission.grant",
            T0 - timedelta(days=1),
            grant={"grant_id": "g1", "provider_id": "prov-1", **grant},
        )

    def found(self, detector: str, action: str, **fields: Any) -> list[Finding]:
        return [f for f in self.send(action, **fields) if f.detector == detector]


def edit(
    account: Account, n: int, at: datetime, action: str = "listing.update", **kw: Any
) -> list[Finding]:
    return account.found(
        bulk_edits.DETECTOR,
        action,
        at=at,
        marketplace="DE",
        resource={"type": "listing", "id": f"SKU-{n:05d}"},
        **kw,
    )


def test_registered() -> None:
    names = dict(ALL)
    for module in (
        "listing_out_of_scope",
        "price_change_over_limit",
        "approval_missing",
        "bulk_listing_burst",
        "provider_sensitive_action",
        "provider_without_grant",
        "off_hours_activity",
    ):
        assert module in names


@pytest.mark.parametrize(
    ("history", "event", "reason"),
    [
        (
            [],
            {"actor": {"type": "provider", "provider_id": "prov-9", "principal_id": "x"}},
            "provider prov-9 holds no grant",
        ),
        (["revoke"], {}, "grant g1 was revoked at 2026-11-02T08:00:00.000Z"),
        (
            [],
            {"marketplace": "JP"},
            "grant g1 does not allow marketplace JP (marketplaces: DE, FR)",
        ),
        (
            [],
            {"action": "listing.delete"},
            "grant g1 does not allow listing.delete (scopes: listing.update)",
        ),
        (
            [],
            {"actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p2"}},
            "grant g1 does not cover principal p2",
        ),
    ],
)
def test_scope_summary_names_the_reason(
    history: list[str], event: dict[str, Any], reason: str
) -> None:
    account = Account()
    account.grant(principals=["p1"], scopes=["listing.update"], marketplaces=["DE", "FR"])
    if "revoke" in history:
        account.send("permission.revoke", T0 - timedelta(hours=1), grant={"grant_id": "g1"})
    fields = {"action": "listing.update", "marketplace": "DE", **event}
    [finding] = account.found("listing_out_of_scope", **fields)
    assert reason in finding.summary
    assert finding.severity == "high"


def test_expired_grant_is_named() -> None:
    account = Account()
    account.grant(scopes=["listing.*"], valid_until="2026-11-01T12:00:00Z")
    [finding] = account.found("listing_out_of_scope", "listing.update", marketplace="DE")
    assert "grant g1 expired at 2026-11-01T12:00:00.000Z" in finding.summary


def price(account: Account, old: str | None, new: str, **kw: Any) -> list[Finding]:
    return account.found(
        price_limit.DETECTOR,
        "listing.price_change",
        marketplace="DE",
        resource={"type": "listing", "id": "SKU-7"},
        changes=[{"field": "price", "old": old, "new": new}],
        **kw,
    )


def test_price_limit_is_decimal_exact() -> None:
    account = Account()
    account.grant(scopes=["listing.*"], max_price_change_pct=33.3)
    assert not price(account, "3.00", "2.001")  # 33.3 % exactly
    [finding] = price(account, "3.00", "2.00")  # 33.33... %
    assert "cut the price of SKU-7 by 33.3%" in finding.title
    assert "from 3.00 to 2.00" in finding.summary and "limit is 33.3%" in finding.summary
    assert price_move(
        normalize(
            {
                "event_id": "x",
                "occurred_at": "2026-11-02T09:00:00Z",
                "account_id": ACCOUNT,
                "actor": AGENCY,
                "action": "listing.price_change",
                "marketplace": "DE",
                "changes": [{"field": "price", "old": "0.10", "new": "0.30"}],
            }
        )
    ) == (Decimal("0.10"), Decimal("0.30"), Decimal(200))


def test_price_without_a_measurable_old_price_is_ignored() -> None:
    account = Account()
    account.grant(scopes=["listing.*"])
    assert not price(account, "0.00", "19.99")
    assert not price(account, None, "19.99")


def test_price_repeats_fold_per_sku() -> None:
    account = Account()
    account.grant(scopes=["listing.*"])
    first = price(account, "50.00", "10.00")
    again = price(account, "10.00", "2.00", at=T0 + timedelta(minutes=5))
    assert first[0].key == again[0].key == f"{ACCOUNT}|p1|SKU-7"
    assert first[0].window == again[0].window


def test_approval_summary_says_why_it_did_not_count() -> None:
    account = Account()
    account.grant(scopes=["listing.*"], require_approval=["listing.delete"])
    account.send(
        "approval.grant",
        T0 - timedelta(hours=2),
        approval={
            "approval_id": "ap-1",
            "action": "listing.delete",
            "approved_by": "owner",
            "resource_id": "SKU-1",
            "expires_at": "2026-11-02T08:00:00Z",
        },
    )
    [finding] = account.found(
        "approval_missing",
        "listing.delete",
        marketplace="DE",
        resource={"type": "listing", "id": "SKU-1"},
        approval_id="ap-1",
    )
    assert "grant(s) g1 require an approval" in finding.summary
    assert "approval ap-1 expired at 2026-11-02T08:00:00.000Z" in finding.summary


def test_bulk_burst_is_one_alert_across_an_hour_boundary() -> None:
    account = Account()
    start = T0 - timedelta(minutes=1)
    findings = [f for n in range(130) for f in edit(account, n, start + timedelta(seconds=n))]
    assert len(findings) == 11  # SKUs 120..130 (a principal without history needs 3 x 40)
    assert len({(f.key, f.window) for f in findings}) == 1
    assert findings[0].severity == "medium" and findings[0].key.endswith("|edits")
    assert "edited 120 distinct SKUs" in findings[0].summary


@pytest.mark.parametrize("override", [None, "low"])
def test_mass_delete_is_critical_and_apart_from_edits(override: str | None) -> None:
    """Critical by default; a severity configured for the detector wins over the escalation."""
    account = Account(
        DetectionConfig(severities={bulk_edits.DETECTOR: override} if override else {})
    )
    for window in range(3):  # three quiet windows: baseline 2 SKUs
        for n in range(2):
            edit(account, n, T0 - timedelta(hours=1) + timedelta(minutes=10 * window, seconds=n))
    findings = [
        f
        for n in range(45)
        for f in edit(account, 100 + n, T0 + timedelta(seconds=2 * n), "listing.delete")
    ]
    assert findings and {f.severity for f in findings} == {override or "critical"}
    assert (
        findings[0].key.endswith("|deletes") and "deleted 40 distinct SKUs" in findings[0].summary
    )


def test_bulk_state_stays_small() -> None:
    account = Account(DetectionConfig(bulk_min_skus=10_000))
    for n in range(bulk_edits.MAX_SKUS + 300):
        edit(account, n, T0 + timedelta(milliseconds=10 * n))
    principal = account.state["det"]["bulk_listing_burst"]["principals"]["prov-1|p1"]
    assert len(principal["edits"]) == bulk_edits.MAX_SKUS
    edit(account, 1, T0 + timedelta(hours=5))  # the old window is pruned, its peak kept
    assert len(principal["edits"]) == 1 and len(principal["history"]) == 1
    for day in range(1, bulk_edits.HISTORY + 3):
        edit(account, 1, T0 + timedelta(hours=5, minutes=10 * day))
    assert len(principal["history"]) == bulk_edits.HISTORY
    other = {"type": "provider", "provider_id": "prov-2", "principal_id": "q1"}
    edit(account, 1, T0 + timedelta(days=bulk_edits.IDLE_DAYS + 1), actor=other)
    assert list(account.state["det"]["bulk_listing_burst"]["principals"]) == ["prov-2|q1"]
    orjson.dumps(account.state)


def test_sellers_never_count_towards_a_burst() -> None:
    account = Account()
    for n in range(200):
        assert not edit(account, n, T0 + timedelta(seconds=n), actor=OWNER)
    assert "bulk_listing_burst" not in account.state["det"]


def test_one_alert_per_event_for_a_stranger_creating_credentials() -> None:
    account = Account()
    stranger = {"type": "provider", "provider_id": "prov-9", "principal_id": "x"}
    findings = account.send("auth.credentials_create", actor=stranger)
    assert [f.detector for f in findings if f.detector.startswith("provider_")] == [
        "provider_sensitive_action"
    ]
    assert findings[0].severity == "critical"


@pytest.mark.parametrize(
    ("start", "end", "utc", "inside"),
    [
        ("22:00", "06:00", "2026-11-02T13:59:00Z", False),  # 21:59 Shanghai
        ("22:00", "06:00", "2026-11-02T14:00:00Z", True),  # 22:00
        ("22:00", "06:00", "2026-11-02T21:59:00Z", True),  # 05:59
        ("22:00", "06:00", "2026-11-02T22:00:00Z", False),  # 06:00, end exclusive
        ("09:00", "17:00", "2026-11-02T00:59:00Z", False),  # 08:59
        ("09:00", "17:00", "2026-11-02T01:00:00Z", True),
        ("00:00", "00:00", "2026-11-02T19:00:00Z", True),  # start == end: the whole day
    ],
)
def test_active_hours(start: str, end: str, utc: str, inside: bool) -> None:
    grant = {"grant_id": "g1", "active_hours": {"tz": "Asia/Shanghai", "start": start, "end": end}}
    assert within_hours(grant, utc.replace("Z", ".000Z")) is inside
