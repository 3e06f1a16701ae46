"""Day vectors: a provider's day on one account and across its accounts, counted right on hand-made
events (hostile ids included), the same in batch and streaming, against the provider's usual day;
changes the seller approved counted nowhere; day alerts with ids of their own."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from detectors.behaviour.account_features import build_all
from detectors.behaviour.day_features import (
    ALL_ACCOUNTS,
    DAY_FEATURES,
    RATIO_PRIOR,
    day_vector,
    new_day,
)
from detectors.behaviour.features import FEATURES, HOUR
from detectors.behaviour.model import BehaviourModel
from detectors.provider_wide.run import Stage
from detectors.rules.behaviour_anomaly import DETECTOR
from detectors.run import new_state, observe
from pipeline.alert import Finding, alert_id
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms, normalize, timestamp_ms
from tests.ml.conftest import SpyModel, benign

ACCOUNT, OTHER = "A1:x.y-Z_9", "B2_acct.q"
PROVIDER = "+prov/=,~@x.y"
P1, P2 = "p@evil.example/=,~", "_p2:+~-"
SKUS = ("SKU | ; DROP TABLE x; --", "sku \"quoted\" 'x' {{7*7}}", "<script>alert(1)</script>")


def _event(
    n: int,
    ts: str,
    action: str,
    principal: str = P1,
    account: str = ACCOUNT,
    **extra: Any,
) -> Event:
    if action.startswith("listing."):
        extra.setdefault("marketplace", "DE")
    return normalize(
        {
            "event_id": f"e:{n}.x-y_z",
            "occurred_at": ts,
            "account_id": account,
            "action": action,
            "actor": {"type": "provider", "provider_id": PROVIDER, "principal_id": principal},
            "source": {"ip": "91.64.1.7"},
            **extra,
        }
    )


def _price(
    n: int, ts: str, old: str, new: str, sku: str, principal: str = P1, **extra: Any
) -> Event:
    return _event(
        n,
        ts,
        "listing.price_change",
        principal,
        resource={"type": "listing", "id": sku},
        changes=[{"field": "price", "old": old, "new": new}],
        **extra,
    )


def _report(n: int, ts: str, report: str, **extra: Any) -> Event:
    return _event(n, ts, "report.download", resource={"type": "report", "id": report}, **extra)


def _day_one() -> list[Event]:
    return [
        _price(1, "2026-11-02T09:00:00Z", "10.00", "9.00", SKUS[0]),  # a 10% cut
        _price(2, "2026-11-02T09:30:00Z", "20.00", "21.00", SKUS[1]),  # a 5% rise
        _price(3, "2026-11-02T10:00:00Z", "50.00", "45.00", SKUS[2], principal=P2),
        _price(4, "2026-11-02T10:10:00Z", "8.00", "8.00", SKUS[0]),  # no move
        _report(5, "2026-11-02T11:00:00Z", "GET_MERCHANT_LISTINGS_ALL_DATA"),  # sensitive
        _report(6, "2026-11-02T11:05:00Z", "GET_SELLER_FEEDBACK_DATA"),  # not sensitive
        _report(7, "2026-11-02T11:10:00Z", "GET_MERCHANT_LISTINGS_ALL_DATA", outcome="denied"),
        _event(
            8, "2026-11-02T23:30:00Z", "listing.update", resource={"type": "listing", "id": "x"}
        ),
    ]


@pytest.fixture()
def day_one() -> list[Event]:
    return _day_one()


def test_a_providers_day_on_an_account_and_across_accounts_is_counted_right(
    day_one: list[Event],
) -> None:
    elsewhere = _price(9, "2026-11-02T12:00:00Z", "25.00", "24.00", SKUS[1], account=OTHER)
    closer = _event(10, "2026-11-03T02:00:00Z", "listing.update", account=ACCOUNT)
    closed = list(build_all([*day_one, elsewhere, closer]))
    days = [(a, c) for a, c in closed if c.span != HOUR]
    assert [(a, c.key, c.window, c.kind) for a, c in days] == [
        (ACCOUNT, f"{PROVIDER}|*", "2026-11-02T00:00:00.000Z/P1D", "provider_day"),
        (ALL_ACCOUNTS, f"{PROVIDER}|*", "2026-11-02T00:00:00.000Z/P1D", "provider_accounts_day"),
    ]
    one = dict(zip(DAY_FEATURES, days[0][1].vector, strict=True))
    assert one == {
        "events_ratio": 1.0,  # no usual day yet
        "price_changes": 3.0,  # the move to the same price is none
        "price_cuts": 2.0,
        "price_cuts_ratio": 1.0,
        "price_cut_excess": pytest.approx((2 - 1) / math.sqrt(3 + 4)),
        "price_change_sum_pct": pytest.approx(-10 + 5 - 10),
        "price_change_t": pytest.approx(-15 / math.sqrt(100 + 25 + 100 + 100)),
        "sensitive_reports": 1.0,  # a denied download and a feedback report are not
        "sensitive_reports_ratio": 1.0,
        "principals": 2.0,
        "accounts": 1.0,
        "off_hours_share": pytest.approx(1 / (8 + 5)),  # 23:30 UTC
        "failed_share": pytest.approx(1 / (8 + 5)),
        "across_accounts": 0.0,
    }
    # the first cut of each hour backs the price features; the evidence keeps the hostile ids
    assert days[0][1].evidence["cut"] == ["e:1.x-y_z", "e:3.x-y_z"]
    assert days[0][1].evidence_for(["price_cuts"])[:2] == ["e:1.x-y_z", "e:3.x-y_z"]
    across = dict(zip(DAY_FEATURES, days[1][1].vector, strict=True))
    assert (across["price_changes"], across["price_cuts"], across["accounts"]) == (4.0, 3.0, 2.0)
    assert across["price_change_sum_pct"] == pytest.approx(-19.0)
    assert across["across_accounts"] == 1.0 and across["off_hours_share"] == pytest.approx(1 / 14)


def test_ratios_compare_with_the_median_of_the_usual_days_once_there_are_three() -> None:
    w = {**new_day(10), "n": 60, "cut": 14, "rep": 12}
    two = {"w": w, "hist": [[10, 2, 1], [30, 6, 3]]}
    assert day_vector(two, False)[:4:3] == [1.0, 1.0]  # two days: no usual day yet
    three = {"w": w, "hist": [[10, 2, 1], [30, 6, 3], [20, 4, 2]]}
    v = dict(zip(DAY_FEATURES, day_vector(three, False), strict=True))
    assert v["events_ratio"] == pytest.approx((60 + RATIO_PRIOR["n"]) / (20 + RATIO_PRIOR["n"]))
    assert v["price_cuts_ratio"] == pytest.approx((14 + RATIO_PRIOR["cut"]) / (4 + 10))
    assert v["sensitive_reports_ratio"] == pytest.approx((12 + 5) / (2 + 5))
    quiet = {"w": {**new_day(10), "n": 3}, "hist": three["hist"]}
    assert day_vector(quiet, False)[0] == 1.0  # a quiet day is not an anomaly


def _approval(n: int, ts: str, resource: str | None, expires: str) -> Event:
    approval: dict[str, Any] = {
        "approval_id": "ap-1:sale",
        "action": "listing.price_change",
        "approved_by": f"{ACCOUNT}-owner",
        "expires_at": expires,
    }
    if resource is not None:
        approval["resource_id"] = resource
    return normalize(
        {
            "event_id": f"appr-{n}",
            "occurred_at": ts,
            "account_id": ACCOUNT,
            "actor": {"type": "seller", "principal_id": f"{ACCOUNT}-owner"},
            "action": "approval.grant",
            "approval": approval,
        }
    )


def test_changes_the_seller_approved_are_counted_nowhere() -> None:
    grant = _approval(1, "2026-11-02T08:00:00Z", SKUS[0], "2026-11-02T12:00:00Z")
    approved = _price(1, "2026-11-02T09:00:00Z", "10.00", "5.00", SKUS[0], approval_id="ap-1:sale")
    other_sku = _price(2, "2026-11-02T09:10:00Z", "10.00", "5.00", SKUS[1], approval_id="ap-1:sale")
    expired = _price(3, "2026-11-02T13:00:00Z", "10.00", "5.00", SKUS[0], approval_id="ap-1:sale")
    plain = _price(4, "2026-11-02T13:10:00Z", "10.00", "9.50", SKUS[2])
    closer = _event(5, "2026-11-03T03:00:00Z", "listing.update")
    closed = list(build_all([grant, approved, other_sku, expired, plain, closer]))
    day = next(c for a, c in closed if a == ACCOUNT and c.span != HOUR)
    v = dict(zip(DAY_FEATURES, day.vector, strict=True))
    # the approved 50% cut is not counted; the one naming the approval for another SKU, or after
    # it expired, is
    assert (v["price_changes"], v["price_change_sum_pct"]) == (3.0, pytest.approx(-105.0))
    nine = next(c for a, c in closed if c.span == HOUR and c.key.endswith(P1) and c.hour % 24 == 9)
    assert dict(zip(FEATURES, nine.vector, strict=True))["events"] == 1.0  # only the other SKU's
    assert "e:1.x-y_z" not in {i for c in [nine, day] for ids in c.evidence.values() for i in ids}


Warm = tuple[dict[str, Any], dict[str, Any]]


def _run(events: list[Event], model: Any, warm: Warm | None = None) -> tuple[list[Finding], Warm]:
    """Behaviour findings of `events` through every account rule and the provider-wide stage,
    from a copy of `warm` (accounts' states, the stage's states) when given; and the states after."""
    config = DetectionConfig()
    states, staged = copy.deepcopy(warm) if warm is not None else ({}, {})
    stage = Stage(config, staged, model=model)
    found = []
    for event in events:
        state = states.setdefault(event["account_id"], new_state())
        found += [*observe(state, event, config, model), *stage.findings(event)]
    return [f for f in found if f.detector == DETECTOR], (states, stage.states)


def _alerts(events: list[Event], model: Any, warm: Warm | None = None) -> list[Finding]:
    return _run(events, model, warm)[0]


@pytest.fixture(scope="module")
def warmed(day_history: list[Event], day_model: BehaviourModel) -> tuple[Warm, list[Finding]]:
    """The states after the day history with the day model, and the behaviour findings on it."""
    found, warm = _run(day_history, day_model)
    return warm, found


def test_batch_day_vectors_equal_the_detectors_and_the_stages(day_history: list[Event]) -> None:
    events = day_history[:60_000]
    batch = [c.vector for _, c in build_all(iter(events)) if c.span != HOUR]
    spy = SpyModel(days=True)
    assert not _alerts(events, spy)
    assert spy.day is not None
    assert len(batch) > 20 and {v[-1] for v in batch} == {0.0, 1.0}
    assert sorted(batch) == sorted(spy.day.scored)


def test_without_a_day_forest_the_stage_keeps_no_day_state(history: list[Event]) -> None:
    for model in (None, SpyModel(days=False)):
        stage = Stage(DetectionConfig(), model=model)  # type: ignore[arg-type]
        for event in history[:3000]:
            stage.findings(event)
        assert not any("days" in s for k, s in stage.states.items() if k.startswith("p|"))


def _sale(history: list[Event], approved: bool) -> list[Event]:
    """A principal of the history cutting 30 prices by 40% within an hour, the day after it."""
    last = next(e for e in reversed(history) if e["actor"]["type"] == "provider")
    day = timestamp_ms(history[-1]["occurred_at"], "t") // 86_400_000 + 1
    start = day * 86_400_000 + 10 * 3_600_000
    events = []
    if approved:
        events.append(
            normalize(
                {
                    "event_id": "sale-approval",
                    "occurred_at": format_ms(start),
                    "account_id": last["account_id"],
                    "actor": {"type": "seller", "principal_id": "owner"},
                    "action": "approval.grant",
                    "approval": {
                        "approval_id": "sale-1",
                        "action": "listing.price_change",
                        "approved_by": "owner",
                        "expires_at": format_ms(start + 3 * 3_600_000),
                    },
                }
            )
        )
    for i in range(30):
        cut: dict[str, Any] = {
            "event_id": f"sale-{i}",
            "occurred_at": format_ms(start + 60_000 + i * 100_000),
            "account_id": last["account_id"],
            "actor": dict(last["actor"]),
            "action": "listing.price_change",
            "marketplace": last.get("marketplace", "DE"),
            "source": {"ip": last["source"]["ip"]},
            "resource": {"type": "listing", "id": f"SALE-{i}"},
            "changes": [{"field": "price", "old": "100.00", "new": "60.00"}],
        }
        if approved:
            cut["approval_id"] = "sale-1"
        events.append(normalize(cut))
    closers = [  # the next hour, then the next day: the sale's hour and day close
        dict(last, event_id=f"closer-{n}", occurred_at=format_ms(at))
        for n, at in enumerate((start + 4 * 3_600_000, (day + 1) * 86_400_000 + 7_200_000))
    ]
    return [*events, *closers]


def test_an_approved_sale_raises_no_behaviour_alert_and_the_same_cuts_unapproved_do(
    day_history: list[Event], day_model: BehaviourModel, warmed: tuple[Warm, list[Finding]]
) -> None:
    warm, on_history = warmed
    assert len(on_history) <= 0.5 * len(day_history) / 10_000  # about the calibrated budget
    for approved in (True, False):
        found = _alerts(_sale(day_history, approved), day_model, warm)
        sale = [f for f in found if any(r.startswith("sale-") for r in f.related)]
        if approved:
            assert not sale, [f.summary for f in sale]
        else:
            windows = {f.window.endswith("/P1D") for f in sale}
            assert windows == {True, False}, "the unapproved sale is flagged by hour and by day"


def test_day_alert_ids_are_deterministic_and_never_meet_an_hours(
    day_history: list[Event], day_model: BehaviourModel, warmed: tuple[Warm, list[Finding]]
) -> None:
    warm, _ = warmed
    sale = _sale(day_history, approved=False)
    first = [alert_id(f.detector, f.key, f.window) for f in _alerts(sale, day_model, warm)]
    again = [alert_id(f.detector, f.key, f.window) for f in _alerts(sale, day_model, warm)]
    assert first == again and first
    day = next(f for f in _alerts(sale, day_model, warm) if f.window.endswith("/P1D"))
    midnight = day.window.removesuffix("/P1D")
    assert alert_id(DETECTOR, day.key, day.window) != alert_id(DETECTOR, day.key, midnight)
    assert "provider-day vector" in day.title or "provider-accounts-day vector" in day.title


def test_day_vectors_of_every_kind_come_out_of_a_benign_history(day_history: list[Event]) -> None:
    kinds = {c.kind for _, c in build_all(iter(benign(30_000, seed=21))) if c.span != HOUR}
    assert kinds == {"provider_day", "provider_accounts_day"}
