"""The current stateful detectors against the code they replaced (tests/detectors/state_reference.py):
the same findings and the same state, byte for byte as the changelog stores it (dict order
included), after every event; states are passed through their stored JSON form at random
points, as a worker's recovery loads them from the changelog.

- simulator streams (seeds 7 and 23, every attack kind) through `detectors.run.observe` and the
  former `observe` with the former detectors, every detector;
- hypothesis sequences of provider events with late events, events at one instant, and jumps of
  days (idle providers and principals forgotten), through each changed detector alone;
- hypothesis inputs for the changed helpers: `rates.count`, new_country_or_asn's memory,
  `reconciliation.prune` and change_outside_gateway's held-back observations (`_due`), on states
  in any order.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import Context, rates
from detectors import reconciliation as rc
from detectors.rules import (
    api_rate_exceeded,
    bulk_listing_burst,
    change_outside_gateway,
    new_country_or_asn,
)
from detectors.run import new_state, observe
from pipeline import authorization
from pipeline.config import DetectionConfig
from pipeline.event import format_ms, normalize
from pipeline.simulation.traffic import ATTACKS, generate
from tests.detectors import state_reference as before

CURRENT = {
    "api_rate_exceeded": api_rate_exceeded.detect,
    "bulk_listing_burst": bulk_listing_burst.detect,
    "new_country_or_asn": new_country_or_asn.detect,
    "change_outside_gateway": change_outside_gateway.detect,
}


def stored(value: Any) -> bytes:
    """As the changelog stores a state (streams/ingest_batch.py `state_record`)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def reloaded(value: Any) -> Any:
    return orjson.loads(stored(value))


def test_the_reference_is_the_former_code() -> None:
    """The reference differs from the current code (else the comparisons would say nothing)."""
    assert set(before.BEFORE) == set(CURRENT)
    for name, fn in before.BEFORE.items():
        assert fn is not CURRENT[name]
        code = getattr(CURRENT[name], "__code__", None)  # None: the mypyc build is loaded
        if code is not None:
            assert fn.__code__.co_code != code.co_code, name


@pytest.mark.parametrize("seed", [7, 23])
def test_simulator_streams_fold_alike(seed: int) -> None:
    config = DetectionConfig()
    now: dict[str, dict[str, Any]] = {}
    then: dict[str, dict[str, Any]] = {}
    found = 0
    for n, (raw, _) in enumerate(
        generate(8_000, seed=seed, accounts=8, providers=5, attack_rate=0.01, attack_kinds=ATTACKS),
        1,
    ):
        event = normalize(raw)
        account = event["account_id"]
        got = observe(now.setdefault(account, new_state()), event, config)
        want = before.observe(then.setdefault(account, new_state()), event, config)
        assert got == want, f"event {n} ({event['event_id']})"
        found += len(got)
        if n % 500 == 0:
            assert stored(now) == stored(then), f"after event {n}"
            if n % 2_000 == 0:  # on from the stored form, as after a recovery
                now, then = reloaded(now), reloaded(then)
    assert stored(now) == stored(then)
    assert found > 100  # the comparison says something: the detectors fired


# Provider events: a clock that moves by these steps (ms), or an event that late.
STEPS_MS = (0, 1, 999, 5_000, 9_999, 10_000, 30_000, 59_999, 61_000, 600_000, 3_600_001)
JUMPS_MS = (8 * 86_400_000, 31 * 86_400_000, 46 * 86_400_000, 91 * 86_400_000)
IPS = (
    "8.8.8.8",
    "9.9.9.9",
    "1.1.1.1",
    "81.2.69.142",
    "5.6.7.8",
    "31.13.64.1",
    "185.60.216.35",
    "77.88.8.8",
    "114.114.114.114",
    "2a03:2880::1",
    "10.0.0.1",
    "not-an-ip",
)
ACTIONS = (
    "listing.update",
    "listing.delete",
    "inventory.update",
    "listing.price_change",
    "report.download",
)
START_MS = 1_795_000_000_000

moves = st.one_of(
    st.tuples(st.just("on"), st.sampled_from(STEPS_MS)),
    st.tuples(st.just("late"), st.sampled_from(STEPS_MS)),
    st.tuples(st.just("jump"), st.sampled_from(JUMPS_MS)),
)
provider_events = st.tuples(
    moves,
    st.sampled_from(("provider", "provider", "provider", "seller")),
    st.sampled_from(("p1", "p2", "p3")),
    st.sampled_from(("a", "b")),
    st.sampled_from(ACTIONS),
    st.sampled_from(("s1", "s2", "s3", "s4", "s5", "s6", None)),
    st.sampled_from((*IPS, None)),
    st.integers(0, 15),  # 0: the state is reloaded from its stored form after the event
)
configs = st.builds(
    DetectionConfig,
    rate_limit_per_min=st.integers(0, 6),
    bulk_min_skus=st.integers(1, 5),
    bulk_window_minutes=st.integers(1, 3),
    bulk_baseline_factor=st.sampled_from((0.5, 1.0, 1.5, 3.0)),
)


def build(n: int, at: int, actor_type: str, provider: str, who: str, *rest: Any) -> dict[str, Any]:
    action, sku, ip = rest
    event: dict[str, Any] = {
        "event_id": f"e{n}",
        "occurred_at": format_ms(at),
        "account_id": "A1",
        "action": action,
        "outcome": "success",
        "actor": (
            {"type": "provider", "provider_id": provider, "principal_id": f"{provider}-{who}"}
            if actor_type == "provider"
            else {"type": "seller", "principal_id": "A1-owner"}
        ),
    }
    if sku is not None:
        event["resource"] = {"type": "listing", "id": sku}
    if ip is not None:
        event["source"] = {"ip": ip}
    return event


@pytest.mark.parametrize("detector", sorted(CURRENT))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, steps=st.lists(provider_events, min_size=1, max_size=60))
def test_each_changed_detector_as_before(
    detector: str, config: DetectionConfig, steps: list[tuple[Any, ...]]
) -> None:
    current, former = CURRENT[detector], before.BEFORE[detector]
    auth = authorization.empty()
    now: dict[str, Any] = {}
    then: dict[str, Any] = {}
    clock = START_MS
    for n, ((move, ms), *fields, reload) in enumerate(steps):
        if move == "late":
            at = clock - ms
        else:
            clock += ms
            at = clock
        event = build(n, at, *fields)
        got = current(event, now, Context(auth=auth, config=config))
        want = former(event, then, Context(auth=auth, config=config))
        assert got == want, f"event {n}"
        assert stored(now) == stored(then), f"after event {n}"
        if reload == 0:
            now, then = reloaded(now), reloaded(then)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("k1", "k2", "k3")),
            st.integers(-2, 3),  # hour move
            st.sampled_from((0, 1, 2, 24, 200)),  # idle hours
            st.booleans(),  # an event id
            st.integers(0, 7),  # 0: the record "fired" (as the rules mark it), 1: reloaded
        ),
        max_size=60,
    )
)
def test_rates_count_as_before(calls: list[tuple[str, int, int, bool, int]]) -> None:
    now: dict[str, Any] = {}
    then: dict[str, Any] = {}
    hour = 490_000
    for n, (key, move, idle, named, mark) in enumerate(calls):
        hour += move if move > 0 else 0
        at = hour + move if move < 0 else hour  # a late event when negative
        event_id = f"e{n}" if named else None
        got = rates.count(now, key, at, idle, event_id)
        want = before.rates_count(then, key, at, idle, event_id)
        assert stored(got) == stored(want)
        assert stored(now) == stored(then)
        if mark == 0 and got is not None and want is not None:
            got["fired"] = want["fired"] = True
        elif mark == 1:
            now, then = reloaded(now), reloaded(then)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from("ABCDEFGH"), st.integers(0, 200).map(lambda d: d * 86_400_000), max_size=8
    ),
    st.sampled_from(("A", "E", "Z", None)),
    st.integers(0, 250),
    st.integers(1, 8),
)
def test_new_country_or_asn_memory_as_before(
    items: dict[str, int], name: str | None, day: int, limit: int
) -> None:
    """What a principal's countries and operators forget and remember (days as time)."""
    now, then = dict(items), dict(items)
    at = day * 86_400_000
    new_country_or_asn._forget(now, at)
    before._ncoa_forget(then, at)
    assert stored(now) == stored(then)
    new_country_or_asn._remember(now, name, at, limit)
    before._ncoa_remember(then, name, at, limit)
    assert stored(now) == stored(then)


times = st.integers(0, 40)
keys = st.sampled_from(("a|x|price", "b|*|quantity", "c|x|status"))
calls_table = st.dictionaries(
    keys,
    st.lists(
        st.tuples(times, st.sampled_from(("1", "2", None)), st.just(None)).map(
            lambda c: [c[0], c[1], c[2], "e", "who", "op"]
        ),
        max_size=4,
    ),
    max_size=3,
)
hist_table = st.dictionaries(
    keys,
    st.lists(
        st.tuples(times, st.sampled_from(("1", "2")), st.just("amazon")).map(list), max_size=5
    ),
    max_size=3,
)
id_tables = st.dictionaries(
    st.sampled_from(("i1", "i2", "i3")),
    st.one_of(times, st.tuples(times, st.just("v")).map(list)),
    max_size=3,
)
payouts_table = st.dictionaries(
    st.sampled_from(("DE", "FR")),
    st.lists(st.tuples(times, st.sampled_from(("p1", None))).map(list), max_size=3),
    max_size=2,
)


def held_back(item: dict[str, Any]) -> dict[str, Any]:
    """An observation change_outside_gateway holds back: its kind and key go together."""
    item["kind"], item["key"] = item.pop("kind_key")
    return item


reconciliation_states = st.fixed_dictionaries(
    {"newest": times},
    optional={
        "calls": calls_table,
        "hist": hist_table,
        "ids": id_tables,
        "schedules": id_tables,
        "alerted": id_tables,
        "payouts": payouts_table,
        "asin": st.dictionaries(st.sampled_from(("B1|x", "B2|x")), st.just("a"), max_size=2),
        "pending": st.lists(
            st.fixed_dictionaries(
                {
                    "at": times,
                    "kind_key": st.sampled_from(
                        (
                            ("listing", "a|x|price"),
                            ("listing", "c|x|status"),
                            ("feed", "feed|i1"),
                            ("report", "report|i9"),
                            ("bank", "bank"),
                        )
                    ),
                    "attribute": st.sampled_from(("price", "status")),
                    "new": st.sampled_from(("1", "2", None)),
                }
            ).map(held_back),
            max_size=4,
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    reconciliation_states,
    st.integers(0, 60),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 30),
)
def test_reconciliation_prune_and_held_back_as_before(
    state: dict[str, Any], newest: int, keep_calls: int, keep_ids: int, grace: int
) -> None:
    now, then = copy.deepcopy(state), copy.deepcopy(state)
    rc.prune(now, newest, keep_calls, keep_ids)
    before.reconciliation_prune(then, newest, keep_calls, keep_ids)
    assert stored(now) == stored(then)
    due = change_outside_gateway._due(now, newest, grace, 10, 5)
    was_due = before.change_outside_gateway_due(then, newest, grace, 10, 5)
    assert stored(due) == stored(was_due)
    assert stored(now) == stored(then)
