"""Alerts name the events they rest on, not only the event that tipped them over.

A missed tax filing is an absence: the only attack-relevant event is the policy that set the
obligation. A bulk burst can be crossed by an ordinary edit after a scripted run: the run's edits
are the evidence. Both would otherwise read as alerts about benign events.
"""

from __future__ import annotations

from typing import Any

from detectors.run import new_state, observe
from pipeline.alert import Finding, fold
from pipeline.config import DetectionConfig
from pipeline.event import format_ms, normalize
from pipeline.simulation.traffic import generate

PROVIDER = {"type": "provider", "provider_id": "prov-1", "principal_id": "prov-1-ops"}


def run(events: list[dict[str, Any]], detector: str) -> dict[str, Any] | None:
    """Fold every finding of `detector` over `events` into one alert, as the detect agent does."""
    state, alert = new_state(), None
    for n, raw in enumerate(events):
        event = normalize({"account_id": "A0001SELLER", "event_id": f"e{n}", **raw})
        for finding in observe(state, event, DetectionConfig()):
            if finding.detector == detector:
                alert = fold(alert, finding, event, n + 1)
    return alert


def test_fold_names_related_events_first_and_once() -> None:
    finding = Finding("d", "high", "k", "w", "t", "s", (), related=("p1", "p2"))
    event = normalize(
        {
            "event_id": "e9",
            "occurred_at": "2026-11-02T10:00:00Z",
            "account_id": "A1",
            "actor": {"type": "seller", "principal_id": "o"},
            "action": "auth.login",
        }
    )
    alert = fold(None, finding, event, 1)
    assert alert["evidence_event_ids"] == ["p1", "p2", "e9"]
    later = fold(alert, finding, {**event, "event_id": "e10"}, 2)
    assert later["evidence_event_ids"] == ["p1", "p2", "e9", "e10"]
    assert later["count"] == 2


def test_missed_filing_names_the_policy_that_set_it() -> None:
    seller = {"type": "seller", "principal_id": "owner"}
    alert = run(
        [
            {"occurred_at": "2026-11-20T09:00:00Z", "action": "auth.login", "actor": seller},
            {
                "occurred_at": "2026-11-21T09:00:00Z",
                "action": "policy.update",
                "actor": seller,
                "policy": {
                    "tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 3}]
                },
            },
            {"occurred_at": "2026-11-22T09:00:00Z", "action": "auth.login", "actor": seller},
            {"occurred_at": "2026-12-04T09:00:00Z", "action": "auth.login", "actor": seller},
        ],
        "tax_filing_missed",
    )
    assert alert is not None
    assert alert["evidence_event_ids"] == ["e1", "e3"]
    assert "set by event e1" in alert["summary"]


def edit(at: str, sku: str) -> dict[str, Any]:
    return {
        "occurred_at": at,
        "action": "listing.update",
        "marketplace": "DE",
        "actor": PROVIDER,
        "resource": {"type": "listing", "id": sku},
    }


def test_burst_names_the_scripted_edits_before_the_crossing() -> None:
    usual = [edit(f"2026-11-02T0{h}:00:{i:02d}Z", f"SKU-{i}") for h in (6, 7, 8) for i in range(5)]
    burst = [
        edit(f"2026-11-02T10:{i // 6:02d}:{i % 6 * 10:02d}Z", f"SKU-{100 + i}") for i in range(60)
    ]
    alert = run([*usual, edit("2026-11-02T09:00:00Z", "SKU-1"), *burst], "bulk_listing_burst")
    assert alert is not None
    # threshold max(40, 3 x 5): the burst's 40th edit crosses it; its 19 predecessors come first
    ids = [f"e{len(usual) + 1 + i}" for i in range(60)]
    assert alert["evidence_event_ids"][:20] == ids[20:40]
    assert alert["evidence_event_ids"][20:] == ids[40:]


def test_long_horizon_attacks_are_labelled_only_on_their_evidence() -> None:
    """The detached scenes' history is benign-labelled; only the attack's own events carry the kind."""
    stream = list(
        generate(
            6000, seed=3, attack_rate=0.01, attack_kinds=("api_rate_sustained", "tax_filing_missed")
        )
    )
    kinds: dict[str, int] = {}
    for event, kind in stream:
        if kind is not None:
            assert event["event_id"].rsplit("-", 1)[-1].startswith("atk")
            kinds[kind] = kinds.get(kind, 0) + 1
        else:
            assert "-atk" not in event["event_id"]
    assert kinds.get("tax_filing_missed", 0) >= 1  # one policy event per instance
    assert kinds.get("api_rate_sustained", 0) >= 130  # the burst, not the day of history before it


# --- Stateful findings name the earlier events they rest on (issue 19, item 3) ---


def test_impossible_travel_names_both_legs() -> None:
    alert = run(
        [
            {
                "occurred_at": "2026-11-02T08:00:00Z",
                "action": "auth.login",
                "actor": PROVIDER,
                "source": {"ip": "91.40.249.39"},
            },
            {
                "occurred_at": "2026-11-02T08:01:00Z",
                "action": "auth.login",
                "actor": PROVIDER,
                "source": {"ip": "91.40.249.40"},
            },
            {
                "occurred_at": "2026-11-02T08:02:00Z",
                "action": "report.download",
                "actor": PROVIDER,
                "source": {"ip": "113.160.10.10"},
            },
        ],
        "impossible_travel",
    )
    assert alert is not None
    assert alert["evidence_event_ids"] == ["e1", "e2"]  # the latest German event, then Vietnam
    assert "(event e1)" in alert["summary"]


def test_impossible_travel_late_first_leg_names_the_newer_position() -> None:
    """A late event that jumps names the newest position it is compared with."""
    alert = run(
        [
            {
                "occurred_at": "2026-11-02T08:05:00Z",
                "action": "auth.login",
                "actor": PROVIDER,
                "source": {"ip": "91.40.249.39"},
            },
            {
                "occurred_at": "2026-11-02T08:03:00Z",
                "action": "auth.login",
                "actor": PROVIDER,
                "source": {"ip": "113.160.10.10"},
            },
        ],
        "impossible_travel",
    )
    assert alert is not None and alert["evidence_event_ids"] == ["e0", "e1"]


def test_takeover_names_every_step() -> None:
    seller = {"type": "seller", "principal_id": "owner"}
    alert = run(
        [
            {
                "occurred_at": "2026-11-02T08:00:00Z",
                "action": "account.contact_change",
                "actor": seller,
            },
            {"occurred_at": "2026-11-02T08:10:00Z", "action": "auth.login", "actor": seller},
            {
                "occurred_at": "2026-11-02T08:20:00Z",
                "action": "funds.bank_account_change",
                "marketplace": "DE",
                "actor": seller,
            },
            {
                "occurred_at": "2026-11-02T09:00:00Z",
                "action": "funds.disbursement_request",
                "marketplace": "DE",
                "actor": seller,
            },
            {
                "occurred_at": "2026-11-02T09:30:00Z",
                "action": "funds.transfer_schedule_change",
                "marketplace": "DE",
                "actor": seller,
            },
        ],
        "account_takeover_sequence",
    )
    assert alert is not None
    assert alert["evidence_event_ids"] == ["e0", "e2", "e3", "e4"]


def refund(at: str) -> dict[str, Any]:
    return {
        "occurred_at": at,
        "action": "funds.refund",
        "marketplace": "DE",
        "actor": {"type": "seller", "principal_id": "owner"},
        "amount": {"value": "20.00", "currency": "EUR"},
    }


def test_refund_burst_names_the_windows_refunds_up_to_a_bound() -> None:
    events = [refund(f"2026-11-02T10:{i:02d}:00Z") for i in range(30)]
    alert = run(events, "refund_burst")
    assert alert is not None
    # fired on the 10th refund (e9), naming the nine before it; later refunds fold in
    assert alert["evidence_event_ids"][:10] == [f"e{i}" for i in range(10)]
    assert len(alert["evidence_event_ids"]) == 30
    # one more burst much later: the bound keeps the evidence of its first finding to 20 refunds
    many = [refund(f"2026-11-03T10:{i // 2:02d}:{i % 2 * 30:02d}Z") for i in range(60)]
    state, first = new_state(), None
    for n, raw in enumerate(many):
        event = normalize({"account_id": "A0001SELLER", "event_id": f"e{n}", **raw})
        found = [
            f
            for f in observe(state, event, DetectionConfig(refund_min=40))
            if f.detector == "refund_burst"
        ]
        if found and first is None:
            first = (found[0], event)
    assert first is not None
    assert (
        len(first[0].related) == 19
        and first[0].related[-1] == "e38"
        and first[1]["event_id"] == "e39"
    )


def failure(at: str, n: int) -> dict[str, Any]:
    return {
        "occurred_at": at,
        "action": "listing.update",
        "marketplace": "DE",
        "actor": PROVIDER,
        "resource": {"type": "listing", "id": f"SKU-{n}"},
        "outcome": "failure",
    }


def test_failed_writes_spike_names_the_failures_in_the_window() -> None:
    events = [failure("2026-11-02T07:00:00Z", 99)] + [
        failure(f"2026-11-02T10:{i:02d}:00Z", i) for i in range(10)
    ]
    alert = run(events, "failed_writes_spike")
    assert alert is not None
    assert alert["evidence_event_ids"] == [f"e{i}" for i in range(1, 11)]  # not the 07:00 failure


def test_api_rate_exceeded_names_the_minutes_requests() -> None:
    events = [{"occurred_at": "2026-11-02T09:00:00Z", "action": "auth.login", "actor": PROVIDER}]
    events += [
        {
            "occurred_at": f"2026-11-02T10:00:{i * 2:02d}Z",
            "action": "inventory.update",
            "marketplace": "DE",
            "actor": PROVIDER,
            "resource": {"type": "listing", "id": f"SKU-{i}"},
        }
        for i in range(21)
    ]
    alert = run(events, "api_rate_exceeded")
    assert alert is not None
    # the 21st request of the minute (e21) fired; the 19 before it are named, e1 fell off the bound
    assert alert["evidence_event_ids"] == [f"e{i}" for i in range(2, 22)]


def test_ip_churn_names_one_event_per_network() -> None:
    nets = ["5.45.207", "177.71.200", "113.160.10", "105.112.4", "36.110.1", "89.160.20"]
    events = [
        {
            "occurred_at": f"2026-11-02T10:{i:02d}:00Z",
            "action": "auth.login",
            "actor": PROVIDER,
            "source": {"ip": f"{net}.7"},
        }
        for i, net in enumerate(nets)
    ]
    events.insert(
        2,
        {
            "occurred_at": "2026-11-02T10:01:30Z",
            "action": "auth.login",
            "actor": PROVIDER,
            "source": {"ip": "177.71.200.8"},
        },
    )
    alert = run(events, "ip_churn")
    assert alert is not None
    # the latest event of each network, oldest network first, then the one that fired
    assert alert["evidence_event_ids"] == ["e0", "e2", "e3", "e4", "e5", "e6"]


def download(at: str, principal: dict[str, str] = PROVIDER) -> dict[str, Any]:
    return {
        "occurred_at": at,
        "action": "report.download",
        "actor": principal,
        "resource": {"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
    }


def test_report_volume_names_the_hours_downloads() -> None:
    history = [
        download(f"2026-11-0{d}T{h:02d}:00:{i:02d}Z")
        for d, h in ((1, 8), (1, 12), (2, 9), (2, 10))
        for i in range(3)
    ]
    grab = [download(f"2026-11-02T14:{i:02d}:00Z") for i in range(25)]
    alert = run([*history, *grab], "report_exfiltration")
    assert alert is not None
    first = len(history)
    # fired on the 20th download of the hour; its 19 predecessors come first
    assert alert["evidence_event_ids"][:20] == [f"e{first + i}" for i in range(20)]
    assert all(e not in alert["evidence_event_ids"] for e in (f"e{i}" for i in range(first)))


def test_sustained_rate_names_the_hours_latest_requests() -> None:
    def call(at_s: int) -> dict[str, Any]:
        return {
            "occurred_at": format_ms(at_s * 1000),
            "action": "ads.campaign_update",
            "marketplace": "DE",
            "actor": PROVIDER,
            "resource": {"type": "campaign", "id": "cmp-1"},
        }

    day = 1_793_577_600  # 2026-11-02T00:00:00Z
    history = [call(day - 26 * 3600 + h * 3600 + i * 30) for h in (0, 12, 23) for i in range(20)]
    hour = [call(day + 10 * 3600 + i * 5) for i in range(130)]
    alert = run([*history, *hour], "api_rate_sustained")
    assert alert is not None
    fired = len(history) + 119  # threshold max(120, 3 x 20): the 120th request of the hour
    assert alert["evidence_event_ids"] == [
        f"e{fired - 19 + i}" for i in range(20)
    ]  # fires once an hour
