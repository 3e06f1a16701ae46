"""A state record's value (streams/ingest_batch.py `state_record`) is the bytes the changelogs
have always had, orjson with `OPT_NON_STR_KEYS`, though it is encoded without the option where
it can be: over every account state and open alert of the simulator's mix with every attack,
and for states with keys that are not strings."""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from pipeline.simulation.traffic import ATTACKS, generate
from streams.ingest_batch import Ingest, PartitionState, state_record
from tests.unit.test_ingest_batch import SETTINGS, records


def before(key: str, value: Any) -> tuple[bytes, bytes | None]:
    return orjson.dumps(key), None if value is None else orjson.dumps(
        value, option=orjson.OPT_NON_STR_KEYS
    )


def test_every_state_of_the_mix_is_encoded_as_before() -> None:
    events = [e for e, _ in generate(3_000, seed=13, attack_rate=0.02, attack_kinds=ATTACKS)]
    ingest, state = Ingest(SETTINGS), PartitionState(0, 7)
    recs = records(events)
    compared = 0
    for start in range(0, len(recs), 20):
        out = ingest.batch(state, recs[start : start + 20])
        for table in (out.accounts, out.alert_changes):
            for key, value in table.items():
                assert state_record(key, value) == before(key, value)
                if value is not None:
                    orjson.dumps(value)  # the states of the mix take the fast path, no fallback
                compared += 1
    assert compared > 300


class Kind(enum.Enum):
    A = "a"


class Text(str):
    pass


@dataclasses.dataclass
class Point:
    x: int
    label: str


@pytest.mark.parametrize(
    "value",
    [
        # string keys: the fast path, with values orjson treats specially
        {"s": Text("sub"), "e": Kind.A, "t": datetime(2026, 12, 5, 6, 0, tzinfo=UTC)},
        {"p": Point(1, "x"), "o": OrderedDict(b=1, a=2), "d": defaultdict(list, k=[1])},
        {Text("k"): 1, "nested": {"deep": [{"x": [1, 2.5, -0.0, True, None]}]}},
        # keys that are not strings: the fallback
        {"det": {"a": {1: "x", "2": [1.5, None]}}, "seq": 1},
        {1: "top", "det": {}},
        {"auth": {"k": "é\u2028<script>\x00"}, "n": 2**63 - 1, "f": -0.0},
        {True: 1, None: 2, 3.5: 3},
        None,
    ],
)
def test_unusual_values_are_encoded_as_before(value: Any) -> None:
    assert state_record("acct", value) == before("acct", value)


def test_what_orjson_cannot_encode_still_raises() -> None:
    with pytest.raises(TypeError):
        state_record("acct", {"x": object()})
    with pytest.raises(TypeError):
        state_record("acct", {"x": "\ud800"})
