"""`detectors.run.observe` calls a rule only for the events it looks at, and that changes nothing.

A rule may declare the actions it looks at (`ACTIONS`, action prefixes) and that it needs the
behaviour model (`NEEDS_MODEL`); `detectors.run.plan` then leaves it out of the events it would
ignore. That is only right if the rule, given such an event, finds nothing and leaves its state
as it was. Checked three ways, on simulator streams (every attack kind, seeds 7 and 23):
- every declaring rule, at many points of the streams, with the event's action swapped for every
  contract action it does not declare (and, for `NEEDS_MODEL`, without a model): no finding, its
  stored state unchanged byte for byte;
- `observe` against the loop it replaced (every detector of `ALL` for every event): the same
  findings in the same order, and the same stored states;
- alert ids in order, every alert version and the stored states of all accounts, against digests
  the code before the change (main at ccda7f2) computed on the same streams, with and without a
  behaviour model.
"""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any, cast

import orjson
import pytest

from tests.detectors.compiled_parity import FlaggingModel, fold_event

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel
    from pipeline.alert import Finding
    from pipeline.config import DetectionConfig

COUNT = 20_000
SEEDS = (7, 23)

#: What main at ccda7f2 gave (`python tests/detectors/test_dispatch.py` on that checkout):
#: (seed, with the stand-in model) -> digests of the alert ids in order, every alert version, the
#: stored states of all accounts.
RECORDED: dict[str, tuple[str, str, str]] = {
    "seed7": (
        "b777068ee5023e5f9c3fae5b5ba5441da758fa43f63d9904126fb883c7646eab",
        "7863a22a8af395103c8e7c2cf10ca713a489175e87fce284ab38a38ae9d748a7",
        "e8bc27ebf9007440ac1bf2b739577b0d0def97c0e59664878bfbece7f35a0331",
    ),
    "seed7-model": (
        "74196a29d6fbd5759c5eba05ac4b05a7c6fa473f202f1011c470f412ea10c27c",
        "f9fa28b787b7070ac6c3c5e539b912bb3e30c58d2d046b072d599379e4d289c2",
        "776b8ad240d72ae949f46b2e020261c55248c8dfa4f2113c07e81441dd252948",
    ),
    "seed23": (
        "d6bae1c283a2030a673ecc0ceefd8e79e38228f08d38c9ac0a0e4c794bc7cf8e",
        "8c4e44ded5f819b2a3b0e3bb68c7882173d717f751302af356c7b23ed1180436",
        "0f9255cfe74123ebb00ebf34844bca50f8b69d3bad235756984eb47d97c0ae35",
    ),
    "seed23-model": (
        "b9b6f099f970230297169220f634d4672ae03f6efe71586983d207f4942520f2",
        "679cda5e64e3311fcd13bed56c23cc1a073066fa1d5379d22eba874f4e098116",
        "ff62b1cc026001b3c57773c3f87872520bb8a75103860428e5a71eee2b87be8b",
    ),
}


def stored(value: Any) -> bytes:
    """A state as the changelog stores it (streams/ingest_batch.py `state_record`)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def raws(seed: int) -> list[dict[str, Any]]:
    from pipeline.simulation.traffic import ATTACKS, generate

    return [
        raw
        for raw, _ in generate(
            COUNT, seed=seed, accounts=8, providers=5, attack_rate=0.01, attack_kinds=ATTACKS
        )
    ]


def events(seed: int) -> list[dict[str, Any]]:
    from pipeline.event import normalize

    return [normalize(raw) for raw in raws(seed)]


def digests(seed: int, modelled: bool) -> tuple[str, str, str]:
    from pipeline.config import DetectionConfig

    config = DetectionConfig()
    model = cast("BehaviourModel", FlaggingModel()) if modelled else None
    states: dict[str, dict[str, Any]] = {}
    open_alerts: dict[str, Any] = {}
    ids, versions = hashlib.sha256(), hashlib.sha256()
    for raw in raws(seed):
        applied = fold_event(raw, states, open_alerts, config, model)  # type: ignore[arg-type]
        for alert in applied.alerts:
            ids.update(alert["alert_id"].encode() + b"\n")
            versions.update(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
    return ids.hexdigest(), versions.hexdigest(), hashlib.sha256(stored(states)).hexdigest()


def _key(seed: int, modelled: bool) -> str:
    return f"seed{seed}" + ("-model" if modelled else "")


@pytest.mark.parametrize("modelled", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_same_alerts_and_states_as_before(seed: int, modelled: bool) -> None:
    assert digests(seed, modelled) == RECORDED[_key(seed, modelled)]


def every_detector(
    state: dict[str, Any],
    event: dict[str, Any],
    config: DetectionConfig,
    model: BehaviourModel | None,
) -> list[Finding]:
    """`detectors.run.observe` as it was before `plan`: every detector for every event."""
    from detectors import ALL, Context
    from pipeline import authorization

    if event["action"] in authorization.AUTHORIZATION_ACTIONS:
        authorization.apply(state["auth"], event)
    ctx = Context(auth=state["auth"], config=config, model=model)
    findings: list[Finding] = []
    detector_state: dict[str, dict[str, Any]] = state["det"]
    spare: dict[str, Any] = {}
    for name, detector in ALL:
        own = detector_state.get(name)
        if own is None:
            own = spare
        found = detector(event, own, ctx)  # type: ignore[arg-type]
        if found:
            findings.extend(found)
        if own is spare:
            if spare:
                detector_state[name] = spare
                spare = {}
        elif not own:
            del detector_state[name]
    return findings


@pytest.mark.parametrize("modelled", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_observe_is_calling_every_detector(seed: int, modelled: bool) -> None:
    from detectors.run import new_state, observe
    from pipeline.config import DetectionConfig

    config = DetectionConfig()
    model = cast("BehaviourModel", FlaggingModel()) if modelled else None
    ours: dict[str, dict[str, Any]] = {}
    theirs: dict[str, dict[str, Any]] = {}
    for n, event in enumerate(events(seed)):
        account = event["account_id"]
        a = ours.setdefault(account, new_state())
        b = theirs.setdefault(account, new_state())
        assert observe(a, event, config, model) == every_detector(b, event, config, model)
        if n % 1_000 == 0:
            assert stored(a) == stored(b)
    assert stored(ours) == stored(theirs)


def test_a_rule_left_out_finds_nothing_and_keeps_its_state() -> None:
    from detectors import ACTIONS, ALL, NEEDS_MODEL, Context
    from detectors.run import new_state, observe
    from pipeline.config import DetectionConfig
    from pipeline.contract import ACTIONS as CONTRACT_ACTIONS

    assert ACTIONS and NEEDS_MODEL  # the dispatch has something to check
    rules = dict(ALL)
    config = DetectionConfig()
    model = cast("BehaviourModel", FlaggingModel())
    checked = 0
    for seed in SEEDS:
        states: dict[str, dict[str, Any]] = {}
        for n, event in enumerate(events(seed)):
            state = states.setdefault(event["account_id"], new_state())
            if n % 250 == 0:
                for name, prefixes in ACTIONS.items():
                    for action in sorted(CONTRACT_ACTIONS):
                        if action.startswith(prefixes):
                            continue
                        own = copy.deepcopy(state["det"].get(name, {}))
                        before = stored(own)
                        other = {**event, "action": action}
                        ctx = Context(auth=state["auth"], config=config, model=model)
                        assert rules[name](other, own, ctx) == [], (name, action)
                        assert stored(own) == before, (name, action)
                        checked += 1
                for name in NEEDS_MODEL:
                    own = copy.deepcopy(state["det"].get(name, {}))
                    before = stored(own)
                    ctx = Context(auth=state["auth"], config=config, model=None)
                    assert rules[name](event, own, ctx) == [], name
                    assert stored(own) == before, name
            observe(state, event, config, model)
    assert checked > 2_000


if __name__ == "__main__":  # prints RECORDED for the code checked out
    import pprint

    pprint.pprint(
        {_key(s, m): digests(s, m) for s in SEEDS for m in (False, True)},
        width=100,
    )
