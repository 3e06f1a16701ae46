"""Every configured threshold, just under and just over, with the default `DetectionConfig()`.

Each number in `DetectionConfig` gets a case on each side of its default, and strict and
non-strict comparisons a case exactly at the boundary, so moving a threshold by one step (1 for
an int, 1% for a float) or turning `<` into `<=` fails a test here;
tests/mutation/threshold_mutation.py (`make mutation`) checks that it does. The expected numbers
below are written out from the documented defaults on purpose: a test that computed them from
the configuration would move with it and prove nothing.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from detectors import geo
from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import format_ms, normalize, timestamp_ms

SEC, MIN, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000
T0 = timestamp_ms("2026-11-02T08:00:00Z", "t")  # a Monday, on every clock boundary up to a day
PROVIDER = {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"}


class Account:
    """One account's state; `send` runs an event through every detector as the detect agent does."""

    def __init__(self, name: str = "A0001SELLER") -> None:
        self.name, self.state, self.n = name, new_state(), 0

    def send(self, detector: str, at: int, action: str, **fields: Any) -> list[Finding]:
        self.n += 1
        doc = {
            "event_id": f"{self.name}-{self.n}",
            "account_id": self.name,
            "occurred_at": format_ms(at),
            "action": action,
            "actor": {"type": "seller", "principal_id": f"{self.name}-owner"},
            **fields,
        }
        return [
            f
            for f in observe(self.state, normalize(doc), DetectionConfig())
            if f.detector == detector
        ]

    def event(self, detector: str, event: tuple[int, str, dict[str, Any]]) -> list[Finding]:
        at, action, fields = event
        return self.send(detector, at, action, **fields)

    def fired_on(self, detector: str, events: list[tuple[int, str, dict[str, Any]]]) -> list[int]:
        """Indexes of the events the detector fired on."""
        return [i for i, event in enumerate(events) if self.event(detector, event)]


# -- suppression_minutes = 60 -------------------------------------------------------------------


def test_suppression_window_is_the_clock_hour() -> None:
    """Findings fold by the 60-minute bucket of their event time (the alert id's window)."""
    account = Account()
    windows = []
    for at in (T0, T0 + 59 * MIN + 59_999, T0 + HOUR, T0 + HOUR - 1 + HOUR):
        (finding,) = account.send("provider_without_grant", at, "report.download", actor=PROVIDER)
        windows.append(finding.window)
    assert windows == [
        "2026-11-02T08:00:00.000Z",
        "2026-11-02T08:00:00.000Z",
        "2026-11-02T09:00:00.000Z",
        "2026-11-02T09:00:00.000Z",
    ]


# -- max_price_change_pct = 30 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "alert"),
    [("130.00", False), ("130.01", True), ("70.00", False), ("69.99", True)],
)
def test_price_move_limit_is_30_percent_either_way(new: str, alert: bool) -> None:
    account = Account()
    account.send(
        "price_change_over_limit",
        T0,
        "permission.grant",
        grant={"grant_id": "g1", "provider_id": "prov-1", "scopes": ["listing.*"]},
    )
    found = account.send(
        "price_change_over_limit",
        T0 + MIN,
        "listing.price_change",
        marketplace="DE",
        actor=PROVIDER,
        resource={"type": "listing", "id": "SKU-1"},
        changes=[{"field": "price", "old": "100.00", "new": new}],
    )
    assert bool(found) is alert


# -- bulk_window_minutes = 10, bulk_min_skus = 40, bulk_baseline_factor = 3.0 ------------------------


def _edit(at: int, sku: str, action: str = "listing.update") -> tuple[int, str, dict[str, Any]]:
    return (
        at,
        action,
        {"marketplace": "DE", "actor": PROVIDER, "resource": {"type": "listing", "id": sku}},
    )


@pytest.mark.parametrize(("skus", "fires"), [(119, False), (120, True)])
def test_bulk_new_principal_needs_factor_times_min_skus(skus: int, fires: bool) -> None:
    """No history: the baseline is bulk_min_skus, so the bar is 3.0 x 40 = 120 distinct SKUs."""
    events = [_edit(T0 + i * SEC, f"SKU-{i}") for i in range(skus)]
    assert Account().fired_on("bulk_listing_burst", events) == ([skus - 1] if fires else [])


def _history_of_small_windows() -> list[tuple[int, str, dict[str, Any]]]:
    """Three completed 10-minute windows of 5 SKUs each (baseline 5: 3 x 5 < 40)."""
    return [_edit(T0 + w * 20 * MIN + i * SEC, f"OLD-{w}-{i}") for w in range(3) for i in range(5)]


@pytest.mark.parametrize(("skus", "fires"), [(39, False), (40, True)])
def test_bulk_with_a_small_baseline_needs_min_skus(skus: int, fires: bool) -> None:
    history = _history_of_small_windows()
    burst = [_edit(T0 + 60 * MIN + i * SEC, f"SKU-{i}") for i in range(skus)]
    fired = Account().fired_on("bulk_listing_burst", history + burst)
    assert fired == ([len(history) + skus - 1] if fires else [])


@pytest.mark.parametrize(("last_at", "fires"), [(10 * MIN - 1, True), (10 * MIN, False)])
def test_bulk_window_is_ten_minutes(last_at: int, fires: bool) -> None:
    """The first of 120 SKUs still counts 10 minutes minus 1 ms later, not 10 minutes later."""
    events = [_edit(T0 + i * SEC, f"SKU-{i}") for i in range(119)] + [
        _edit(T0 + last_at, "SKU-last")
    ]
    assert Account().fired_on("bulk_listing_burst", events) == ([119] if fires else [])


def test_bulk_late_edit_at_the_window_edge_is_not_counted() -> None:
    events = [_edit(T0 + i * SEC, f"SKU-{i}") for i in range(119)]
    late = _edit(T0 + 118 * SEC - 10 * MIN, "SKU-late")  # exactly the newest edit minus the window
    assert Account().fired_on("bulk_listing_burst", [*events, late]) == []


def test_bulk_evidence_is_the_edits_inside_the_window() -> None:
    account = Account()
    events = [_edit(T0 + i * SEC, f"SKU-{i}") for i in range(120)]
    assert account.fired_on("bulk_listing_burst", events) == [119]
    late_id = f"{account.name}-{account.n + 1}"
    account.event(
        "bulk_listing_burst", _edit(T0 + 119 * SEC - 10 * MIN, "SKU-0")
    )  # exactly at the edge
    (finding,) = account.event("bulk_listing_burst", _edit(T0 + 119 * SEC, "SKU-1"))
    assert late_id not in finding.related
    assert len(finding.related) == 19  # the latest 19 edits inside the window, besides this one


# -- takeover_window_hours = 72 -------------------------------------------------------------------


@pytest.mark.parametrize(("after", "fires"), [(72 * HOUR, True), (72 * HOUR + 1, False)])
def test_takeover_window_is_72_hours(after: int, fires: bool) -> None:
    account = Account()
    assert not account.send(
        "account_takeover_sequence",
        T0,
        "account.contact_change",
        marketplace="DE",
        changes=[{"field": "email", "old": "ops@seller.example", "new": "ops@elsewhere.example"}],
    )
    found = account.send(
        "account_takeover_sequence",
        T0 + after,
        "funds.disbursement_request",
        marketplace="DE",
        amount={"value": "1000.00", "currency": "EUR"},
    )
    assert bool(found) is fires


# -- refund_window_minutes = 60, refund_min = 10, refund_baseline_factor = 3.0 --------------------


REFUND = {"marketplace": "DE", "amount": {"value": "25.00", "currency": "EUR"}}


def _refunds(start: int, count: int) -> list[tuple[int, str, dict[str, Any]]]:
    return [(start + i * SEC, "funds.refund", REFUND) for i in range(count)]


@pytest.mark.parametrize(("count", "fires"), [(9, False), (10, True)])
def test_refund_min_is_10(count: int, fires: bool) -> None:
    assert Account().fired_on("refund_burst", _refunds(T0, count)) == ([count - 1] if fires else [])


@pytest.mark.parametrize(("last_at", "fires"), [(HOUR - 1, True), (HOUR, False)])
def test_refund_window_is_60_minutes(last_at: int, fires: bool) -> None:
    """Nine refunds at 08:00, the tenth 59:59.999 later (inside the hour) or 60 minutes later."""
    events = [*_refunds(T0, 9), (T0 + last_at, "funds.refund", REFUND)]
    assert Account().fired_on("refund_burst", events) == ([9] if fires else [])


def test_refund_older_than_the_window_is_not_counted() -> None:
    """Nine refunds at 09:00, then a late one from 08:00: a whole window behind, not counted."""
    events = [*_refunds(T0 + HOUR, 9), (T0, "funds.refund", REFUND)]
    assert Account().fired_on("refund_burst", events) == []


@pytest.mark.parametrize(("count", "fires"), [(26, False), (27, True)])
def test_refund_factor_is_3_times_the_usual_window(count: int, fires: bool) -> None:
    """A window of 9 refunds two hours earlier: the bar is then 3.0 x 9 = 27."""
    events = [*_refunds(T0 - 2 * HOUR, 9), *_refunds(T0, count)]
    assert Account().fired_on("refund_burst", events) == ([len(events) - 1] if fires else [])


@pytest.mark.parametrize(("count", "fires"), [(129, False), (130, True)])
def test_refund_factor_on_a_grown_baseline(count: int, fires: bool) -> None:
    """Windows of 9, 26, 52 and 86 refunds (each under its bar), the last one ending where the
    sliding window starts: baseline 43.25, bar 129.75."""
    history = [
        e for hour, n in ((1, 9), (3, 26), (5, 52), (7, 86)) for e in _refunds(T0 + hour * HOUR, n)
    ]
    events = [*history, *_refunds(T0 + 8 * HOUR + 50 * MIN, count)]
    assert Account().fired_on("refund_burst", events) == ([len(events) - 1] if fires else [])


# -- ip_churn_per_hour = 5 ------------------------------------------------------------------------


def _from_network(at: int, n: int) -> tuple[int, str, dict[str, Any]]:
    return at, "report.download", {"actor": PROVIDER, "source": {"ip": f"5.{60 + n}.20.9"}}


@pytest.mark.parametrize(("networks", "fires"), [(5, False), (6, True)])
def test_ip_churn_allows_5_networks_an_hour(networks: int, fires: bool) -> None:
    events = [_from_network(T0 + i * MIN, i) for i in range(networks)]
    assert Account().fired_on("ip_churn", events) == ([networks - 1] if fires else [])


def test_ip_churn_remembers_at_most_twice_the_limit_plus_two_networks() -> None:
    account = Account()
    findings = [account.event("ip_churn", _from_network(T0 + i * MIN, i)) for i in range(15)]
    assert "from 12 distinct networks" in findings[-1][0].summary


# -- travel_max_kmh = 1000 ------------------------------------------------------------------------

GERMANY, VIETNAM, NETHERLANDS = "91.40.249.39", "113.160.10.10", "188.166.1.10"


def _at(at: int, ip: str) -> tuple[int, str, dict[str, Any]]:
    return at, "report.download", {"actor": PROVIDER, "source": {"ip": ip}}


def test_travel_addresses_are_where_the_cases_say() -> None:
    assert [geo.lookup(ip).country for ip in (GERMANY, VIETNAM, NETHERLANDS)] == ["DE", "VN", "NL"]
    assert geo.min_distance_km("DE", "NL") == 0.0


@pytest.mark.parametrize(("slower", "fires"), [(False, True), (True, False)])
def test_travel_speed_limit_is_1000_kmh(slower: bool, fires: bool) -> None:
    """Germany to Vietnam in just under / just over the time 1000 km/h needs."""
    km = geo.min_distance_km("DE", "VN")
    assert km is not None and km > 5000
    needed_ms = km / 1000.0 * HOUR
    gap = math.ceil(needed_ms) if slower else math.floor(needed_ms)
    assert Account().fired_on("impossible_travel", [_at(T0, GERMANY), _at(T0 + gap, VIETNAM)]) == (
        [1] if fires else []
    )


def test_travel_between_neighbours_in_the_same_instant_is_possible() -> None:
    """0 km at any speed: not over the limit, even with no time between the events."""
    assert Account().fired_on("impossible_travel", [_at(T0, GERMANY), _at(T0, NETHERLANDS)]) == []


#: The longest trip that can still be impossible: half the Earth at 1000 km/h, in ms (as the rule
#: computes it).
HORIZON_MS = int(20_015.0 / 1000.0 * HOUR)


def test_travel_incident_is_open_until_the_horizon() -> None:
    """Back in Germany exactly a horizon after the flagged jump: still the incident's other side."""
    flagged = T0 + 2 * MIN
    events = [
        _at(T0, GERMANY),
        _at(flagged, VIETNAM),
        _at(flagged + HORIZON_MS - MIN, VIETNAM),
        _at(flagged + HORIZON_MS, GERMANY),
    ]
    assert Account().fired_on("impossible_travel", events) == [1]


def test_travel_position_exactly_a_horizon_old_is_kept() -> None:
    """The hourly sweep keeps a position exactly a horizon old: its open incident carries over."""
    flagged = T0 + 2 * MIN
    events = [
        _at(T0, GERMANY),
        _at(flagged, VIETNAM),
        _at(flagged + HORIZON_MS, VIETNAM),
        _at(flagged + HORIZON_MS, GERMANY),
    ]
    assert Account().fired_on("impossible_travel", events) == [1]


# -- rate_limit_per_min = 20 ----------------------------------------------------------------------


@pytest.mark.parametrize(("requests", "fires"), [(20, False), (21, True)])
def test_rate_limit_is_20_a_minute(requests: int, fires: bool) -> None:
    events = [(T0 + i * 100, "report.download", {"actor": PROVIDER}) for i in range(requests)]
    assert Account().fired_on("api_rate_exceeded", events) == ([requests - 1] if fires else [])


# -- hourly rates: rate_sustained_min = 120, rate_sustained_factor = 3.0, --------------------------
# -- report_downloads_min = 20, report_baseline_factor = 5.0 ----------------------------------------


def _hours(
    usual: int, count: int, action: str, fields: dict[str, Any]
) -> list[tuple[int, str, dict[str, Any]]]:
    """`usual` events in each of three hours, then `count` in an hour a day later (learned by then)."""
    events = [(T0 + h * HOUR + i * SEC, action, fields) for h in range(3) for i in range(usual)]
    return events + [(T0 + 24 * HOUR + i * SEC, action, fields) for i in range(count)]


@pytest.mark.parametrize(
    ("usual", "count", "fires"),
    [(10, 119, False), (10, 120, True), (50, 149, False), (50, 150, True)],
)
def test_sustained_rate_needs_120_and_3_times_the_busy_hour(
    usual: int, count: int, fires: bool
) -> None:
    events = _hours(
        usual,
        count,
        "listing.update",
        {"marketplace": "DE", "actor": PROVIDER, "resource": {"type": "listing", "id": "SKU-1"}},
    )
    assert Account().fired_on("api_rate_sustained", events) == ([len(events) - 1] if fires else [])


@pytest.mark.parametrize(
    ("usual", "count", "fires"),
    [(2, 19, False), (2, 20, True), (21, 104, False), (21, 105, True)],
)
def test_report_volume_needs_20_and_5_times_the_busy_hour(
    usual: int, count: int, fires: bool
) -> None:
    events = _hours(
        usual,
        count,
        "report.download",
        {"actor": PROVIDER, "resource": {"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"}},
    )
    account = Account()
    fired = [
        i
        for i, e in enumerate(events)
        if any(f.key.endswith("|volume") for f in account.event("report_exfiltration", e))
    ]
    assert fired == ([len(events) - 1] if fires else [])


# -- failed_writes_window_minutes = 15, failed_writes_min = 10 --------------------------------------


def _failed(at: int) -> tuple[int, str, dict[str, Any]]:
    return (
        at,
        "listing.update",
        {
            "marketplace": "DE",
            "actor": PROVIDER,
            "outcome": "failure",
            "resource": {"type": "listing", "id": "SKU-1"},
        },
    )


@pytest.mark.parametrize(("count", "fires"), [(9, False), (10, True)])
def test_failed_writes_min_is_10(count: int, fires: bool) -> None:
    events = [_failed(T0 + i * SEC) for i in range(count)]
    assert Account().fired_on("failed_writes_spike", events) == ([count - 1] if fires else [])


@pytest.mark.parametrize(("last_at", "fires"), [(15 * MIN, True), (15 * MIN + 1, False)])
def test_failed_writes_window_is_15_minutes(last_at: int, fires: bool) -> None:
    # the tenth failure 15 minutes after the first still counts the first; 1 ms later it does not
    events = [_failed(T0 + i * SEC) for i in range(9)] + [_failed(T0 + last_at)]
    assert Account().fired_on("failed_writes_spike", events) == ([9] if fires else [])


def test_failed_write_late_by_exactly_the_window_still_counts() -> None:
    events = [_failed(T0 + 15 * MIN) for _ in range(9)] + [_failed(T0)]
    assert Account().fired_on("failed_writes_spike", events) == [9]


# -- tax_grace_days = 0 ---------------------------------------------------------------------------

JAN = timestamp_ms("2027-01-01T00:00:00Z", "t")
DUE = JAN + 10 * DAY  # due day 10: the end of 10 January, no grace
POLICY = {"policy": {"tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 10}]}}


def _tax_events(*tail: tuple[int, str, dict[str, Any]]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(JAN, "auth.login", {}), (JAN + DAY, "policy.update", POLICY), *tail]


def test_tax_missing_filing_fires_at_the_deadline() -> None:
    assert Account().fired_on("tax_filing_missed", _tax_events((DUE, "auth.login", {}))) == [2]


def test_tax_filing_in_the_last_millisecond_is_on_time() -> None:
    filing = (
        DUE - 1,
        "tax.filing",
        {"marketplace": "DE", "resource": {"type": "vat_return", "id": "DE-2027-01"}},
    )
    assert (
        Account().fired_on("tax_filing_missed", _tax_events(filing, (DUE, "auth.login", {}))) == []
    )


def test_tax_policy_set_exactly_at_the_deadline_is_not_judged_for_that_period() -> None:
    events = [
        (JAN, "auth.login", {}),
        (DUE, "policy.update", POLICY),
        (DUE + DAY, "auth.login", {}),
    ]
    assert Account().fired_on("tax_filing_missed", events) == []
