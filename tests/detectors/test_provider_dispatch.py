"""The provider stage calls a provider-wide rule only for the events it looks at, and that changes
nothing.

A provider-wide rule may declare the actions it looks at (`ACTIONS`, action prefixes);
`detectors.provider_wide.run.plan` then leaves it out of the events it would ignore. That is only
right if the rule, given such an event, finds nothing and leaves its state as it was. Checked on
simulator streams (every attack kind, seeds 7 and 23, as tests/detectors/compiled_parity.py
`provider_fold` makes them, with the Sigma examples and a day forest):
- every declaring rule, at many points of the streams, with the event's action swapped for every
  contract action it does not declare: no finding, its stored state unchanged byte for byte;
- `Stage.observe` against the same stage calling every rule for every event: the same alert
  versions in the same order, the same records at every checkpoint, the same final state.
(tests/detectors/test_provider_state_sameness.py compares the same streams with digests that
code before the dispatch computed.)
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.detectors.compiled_parity import SIGMA_EXAMPLES, day_model

COUNT = 20_000
SEEDS = (7, 23)


def stored(value: Any) -> bytes:
    """A state as the snapshot topic stores it."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def events(seed: int) -> list[dict[str, Any]]:
    from pipeline.event import normalize
    from pipeline.simulation.traffic import ATTACKS, generate

    return [
        normalize(raw)
        for raw, _ in generate(
            COUNT,
            seed=seed,
            accounts=8,
            providers=5,
            attack_rate=0.01,
            attack_kinds=ATTACKS,
            start=datetime(2026, 11, 2, 6, 0, tzinfo=UTC),
        )
    ]


def stage() -> Any:
    import detectors.sigma
    from detectors.provider_wide.run import Stage
    from detectors.sigma.evaluate import SigmaRules
    from detectors.sigma.load import load
    from pipeline.config import DetectionConfig

    sigma = SigmaRules(load(Path(detectors.sigma.__file__).parent / SIGMA_EXAMPLES))
    return Stage(DetectionConfig(), sigma=sigma, model=day_model())


def test_a_rule_left_out_finds_nothing_and_keeps_its_state() -> None:
    from detectors import Context
    from detectors.provider_wide import ACTIONS, ALL, provider_of
    from detectors.provider_wide.run import ACCOUNT, PROVIDER
    from pipeline import authorization
    from pipeline.contract import ACTIONS as CONTRACT_ACTIONS

    assert ACTIONS  # the dispatch has something to check
    rules = dict(ALL)
    checked = 0
    for seed in SEEDS:
        folding = stage()
        for n, event in enumerate(events(seed)):
            provider = provider_of(event)
            if n % 100 == 0 and provider is not None:
                states = folding.states
                det = states.get(PROVIDER + provider, {}).get("det", {})
                auth = states.get(ACCOUNT + event["account_id"]) or authorization.empty()
                for name, prefixes in ACTIONS.items():
                    for action in sorted(CONTRACT_ACTIONS):
                        if action.startswith(prefixes):
                            continue
                        own = copy.deepcopy(det.get(name, {}))
                        before = stored(own)
                        other = {**event, "action": action}
                        ctx = Context(auth=auth, config=folding.config)
                        assert rules[name](other, own, ctx) == [], (name, action)
                        assert stored(own) == before, (name, action)
                        checked += 1
            folding.observe(event)
    assert checked > 2_000


@pytest.mark.parametrize("seed", SEEDS)
def test_observe_is_calling_every_rule(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from detectors.provider_wide import ALL
    from detectors.provider_wide import run as stage_module

    ours, theirs = stage(), stage()
    for n, event in enumerate(events(seed), 1):
        mine = ours.observe(event)
        with monkeypatch.context() as patched:
            # no rule declares its actions, and `ALL` is another tuple (so `plan` forgets the
            # plans it made): every rule for every event, as before `plan`
            patched.setattr(stage_module, "ACTIONS", {})
            patched.setattr(stage_module, "ALL", tuple(list(ALL)))
            every = theirs.observe(event)
        assert mine == every
        if n % 1_000 == 0:
            assert stored(ours.take_dirty()) == stored(theirs.take_dirty())
    assert stored(ours.states) == stored(theirs.states)
