"""The fund-move, API-rate, exfiltration and compliance-drift rules beyond the fixture cases:
state that survives the detect agent's JSON table, stays small, and decisions the fixtures
cannot show in one last event (several periods at once, once per minute, bursts not learned)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from detectors import ALL
from detectors.rules import report_exfiltration
from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import normalize
from pipeline.simulation.traffic import ATTACKS, generate

from .test_cases import CASES_DIR, build_event

ACCOUNT = "A0001SELLER"
AGENCY = {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"}
DETECTORS = (
    "funds_without_approval",
    "account_takeover_sequence",
    "refund_burst",
    "api_rate_exceeded",
    "api_rate_sustained",
    "report_exfiltration",
    "tax_filing_missed",
    "failed_writes_spike",
)


class Account:
    """One account's state, fed events like the detect agent feeds it."""

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.state = new_state()
        self.config = config or DetectionConfig()
        self.n = 0

    def send(
        self, action: str, at: datetime, actor: dict[str, str] | None = None, **fields: Any
    ) -> list[Finding]:
        self.n += 1
        doc = {
            "event_id": f"e-{self.n}",
            "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "account_id": ACCOUNT,
            "actor": actor or {"type": "seller", "principal_id": f"{ACCOUNT}-owner"},
            "action": action,
            **fields,
        }
        return observe(self.state, normalize(doc), self.config)


def of(findings: list[Finding], detector: str) -> list[Finding]:
    return [f for f in findings if f.detector == detector]


def test_modules_are_registered() -> None:
    assert set(DETECTORS) <= dict(ALL).keys()


@pytest.mark.parametrize("detector", DETECTORS)
def test_fixture_cases_decide_the_same_through_a_json_table(detector: str) -> None:
    """The detect agent keeps state in a Faust table as JSON: a round trip between every event
    must not change a single decision (no int keys, tuples or sets in the state)."""
    doc = orjson.loads((CASES_DIR / f"{detector}.json").read_bytes())
    for case in doc["cases"]:
        plain: dict[str, Any] = {}
        tabled: dict[str, Any] = {}
        for n, raw in enumerate(case["events"]):
            event = build_event(raw, case["name"], n)
            account = event["account_id"]
            direct = observe(plain.setdefault(account, new_state()), event, DetectionConfig())
            stored = orjson.loads(orjson.dumps(tabled.get(account, new_state())))
            again = observe(stored, event, DetectionConfig())
            tabled[account] = stored
            assert [(f.detector, f.key, f.window) for f in direct] == [
                (f.detector, f.key, f.window) for f in again
            ]


def test_state_stays_small_on_a_long_labelled_stream() -> None:
    states: dict[str, Any] = {}
    config = DetectionConfig()
    for raw, _ in generate(
        15_000, seed=5, attack_rate=0.01, attack_kinds=ATTACKS, events_per_hour=1800
    ):
        event = normalize(raw)
        observe(states.setdefault(event["account_id"], new_state()), event, config)
    for state in states.values():
        for name in DETECTORS:
            assert len(orjson.dumps(state["det"].get(name, {}))) < 6_000, name


def test_a_silent_account_gets_one_alert_per_missed_period() -> None:
    acct = Account()
    acct.send("auth.login", datetime(2026, 11, 20, tzinfo=UTC))
    acct.send(
        "policy.update",
        datetime(2026, 11, 21, tzinfo=UTC),
        policy={"tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 10}]},
    )
    acct.send("tax.filing", datetime(2026, 12, 3, tzinfo=UTC), marketplace="DE")
    found = of(acct.send("auth.login", datetime(2027, 4, 15, tzinfo=UTC)), "tax_filing_missed")
    assert [f.window[:7] for f in found] == ["2027-01", "2027-02", "2027-03", "2027-04"]
    assert len({f.key for f in found}) == 1
    assert not of(acct.send("auth.login", datetime(2027, 4, 16, tzinfo=UTC)), "tax_filing_missed")


def test_grace_days_move_the_deadline() -> None:
    acct = Account(DetectionConfig(tax_grace_days=3))
    acct.send("auth.login", datetime(2026, 12, 20, tzinfo=UTC))
    acct.send(
        "policy.update",
        datetime(2026, 12, 21, tzinfo=UTC),
        policy={"tax_filings": [{"marketplace": "FR", "cadence": "monthly", "due_day": 10}]},
    )
    assert not of(
        acct.send("auth.login", datetime(2027, 1, 13, 23, tzinfo=UTC)), "tax_filing_missed"
    )
    assert of(acct.send("auth.login", datetime(2027, 1, 14, tzinfo=UTC)), "tax_filing_missed")


def test_rate_limit_fires_once_per_clock_minute_and_follows_the_policy() -> None:
    acct = Account()
    t0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    fired = [
        of(
            acct.send("inventory.update", t0 + timedelta(seconds=i * 2), AGENCY, marketplace="DE"),
            "api_rate_exceeded",
        )
        for i in range(29)
    ]
    assert [i for i, f in enumerate(fired) if f] == [20]

    relaxed = Account()
    relaxed.send("policy.update", t0 - timedelta(hours=1), policy={"rate_limit_per_min": 50})
    for i in range(29):
        assert not of(
            relaxed.send(
                "inventory.update", t0 + timedelta(seconds=i * 2), AGENCY, marketplace="DE"
            ),
            "api_rate_exceeded",
        )


def test_a_refund_burst_is_not_learned_as_usual() -> None:
    acct = Account()
    fired = []
    for start in (
        datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        datetime(2026, 11, 2, 13, 0, tzinfo=UTC),
    ):
        for i in range(12):
            findings = acct.send(
                "funds.refund",
                start + timedelta(minutes=3 * i),
                marketplace="DE",
                amount={"value": "40.00", "currency": "EUR"},
            )
            fired.append(bool(of(findings, "refund_burst")))
    assert fired[11] and fired[23], "both bursts fire"


def test_simulator_reports_hold_no_buyer_data() -> None:
    assert (
        not {"GET_FLAT_FILE_OPEN_LISTINGS_DATA", "GET_MERCHANT_LISTINGS_ALL_DATA"}
        & report_exfiltration.BUYER_PII_REPORTS
    )


def test_takeover_alert_folds_payouts_after_one_change() -> None:
    acct = Account()
    t0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    acct.send("funds.bank_account_change", t0, marketplace="DE")
    first = of(
        acct.send(
            "funds.disbursement_request",
            t0 + timedelta(hours=1),
            marketplace="DE",
            amount={"value": "9000.00", "currency": "EUR"},
        ),
        "account_takeover_sequence",
    )
    second = of(
        acct.send("funds.transfer_schedule_change", t0 + timedelta(hours=30), marketplace="DE"),
        "account_takeover_sequence",
    )
    assert first and second
    assert (first[0].key, first[0].window) == (second[0].key, second[0].window)
    assert "e-1" in first[0].summary
