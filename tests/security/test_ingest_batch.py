"""Issue 15, finding 22: one bad element of an HTTP ingest batch is one rejected event.

Before, one element nested deeper than the JSON parser allows, or holding invalid UTF-8, made the
whole array undecodable: the request became a single rejected "event" (one verdict for three
events, the good ones lost) and the dead letter held a placeholder instead of the input. Now the
array is cut into its elements as the client's bytes (sources/http_batch.py), each gets its own
verdict, and a rejected element's dead letter holds its bytes (up to `deadletter.MAX_RAW`).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from partnerwatch.local_worker import Namespace, Worker
from pipeline import deadletter
from pipeline.simulation.traffic import generate
from tests.integration.test_http_ingest import http_env, post
from tests.reliability.test_validator_fuzz import deep_nesting
from tests.unit.test_event import RICH, json_values

# -- hostile elements -----------------------------------------------------------------------------------

#: a valid event with bytes that are not UTF-8 put inside one of its strings or between its tokens
not_utf8 = st.builds(
    lambda junk, at: (lambda good: good[:at] + junk + good[at:])(orjson.dumps(RICH)),
    st.sampled_from(
        [
            b"\xff",
            b"\xc3",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe2\x82",
            b"\x80" * 7,
        ]
    ),
    st.integers(min_value=1, max_value=len(orjson.dumps(RICH)) - 1),
)
#: deeper than orjson parses (1024) or writes (255): both used to sink the whole request
too_deep = st.builds(
    lambda depth, kind: (
        (b'{"a":' * depth + b"1" + b"}" * depth)
        if kind == "dict"
        else (b"[" * depth + b"1" + b"]" * depth)
    ),
    st.integers(min_value=256, max_value=6000),
    st.sampled_from(["list", "dict"]),
)
#: a string that never closes would swallow the rest of the array: only as the last element
hostile = st.one_of(
    not_utf8, too_deep, deep_nesting.filter(lambda b: b.count(b"[") + b.count(b"{") > 255)
)
whitespace = st.sampled_from([b"", b" ", b"\n", b"\t", b" \r\n "])


def body_of(items: list[bytes], spaces: list[bytes]) -> bytes:
    pads = itertools.cycle(spaces or [b""])
    return b"[" + b",".join(next(pads) + item + next(pads) for item in items) + b"]"


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=12), st.lists(whitespace, max_size=5))
def test_split_gives_back_each_element_as_sent(values: list[Any], spaces: list[bytes]) -> None:
    from sources.http_batch import split_batch  # new with the fix (the module loads on older code)

    items = [orjson.dumps(v) for v in values]
    assert split_batch(body_of(items, spaces)) == items


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(st.one_of(hostile, json_values.map(orjson.dumps)), min_size=1, max_size=6),
    st.lists(whitespace, max_size=5),
)
def test_split_keeps_hostile_elements_apart_and_intact(
    items: list[bytes], spaces: list[bytes]
) -> None:
    from sources.http_batch import split_batch  # new with the fix (the module loads on older code)

    assert split_batch(body_of(items, spaces)) == items


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_split_takes_any_bytes(body: bytes) -> None:
    from sources.http_batch import split_batch  # new with the fix (the module loads on older code)

    pieces = split_batch(b"[" + body)
    assert isinstance(pieces, list) and all(isinstance(p, bytes) for p in pieces)
    try:
        decoded = orjson.loads(b"[" + body)
    except orjson.JSONDecodeError:
        return
    assert [orjson.loads(p) for p in pieces] == decoded  # a valid array: exactly its elements


def test_split_edges() -> None:
    from sources.http_batch import split_batch  # new with the fix (the module loads on older code)

    assert split_batch(b"") == [b""] and split_batch(b'{"a": [1, 2]}') == [b'{"a": [1, 2]}']
    assert (
        split_batch(b"  [ ]  ") == []
        and split_batch(b"[1,]") == [b"1", b""]
        and split_batch(b"[,]") == [b"", b""]
    )
    assert split_batch(b'[{"a": "x,]}"}, 2]') == [b'{"a": "x,]}"}', b"2"]
    assert split_batch(b'["\\"", "\\\\", 3]') == [b'"\\""', b'"\\\\"', b"3"]
    assert split_batch(b"[1] [2]") == [
        b"1",
        b"[2]",
    ]  # text after the array: one more (rejected) element
    assert split_batch(b'[1, "open') == [b"1", b'"open']  # unterminated: runs to the end
    assert split_batch(b"[1, {2, 3]") == [b"1", b"{2, 3]"]


# -- on a real worker ------------------------------------------------------------------------------------

_serial = itertools.count()


def good(i: int) -> dict[str, Any]:
    return {**POOL[i % len(POOL)], "event_id": f"batch-{next(_serial)}"}


POOL = [e for e, _ in generate(200, seed=22)]


def raw_of(letter: dict[str, Any]) -> bytes:
    return (
        base64.b64decode(letter["raw"])
        if letter["raw_encoding"] == "base64"
        else letter["raw"].encode()
    )


@pytest.mark.integration
def test_one_bad_element_is_one_rejected_event_and_its_bytes_are_kept(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env=http_env(PW_HTTP_RATE="0"))
    worker = Worker(ns).start()
    sent: list[tuple[list[str], list[bytes]]] = []  # (accepted event ids, rejected raw elements)
    try:
        # the finding's own example: good, nested too deep, good, not UTF-8, good
        deep = b"[" * 3000 + b"1" + b"]" * 3000
        broken = orjson.dumps(RICH).replace(b"A0001SELLER", b"A0001\xffSELLER")
        big = orjson.dumps(
            {**RICH, "operation": "x" * (deadletter.MAX_RAW + 5000)}
        )  # too_large, cut in the letter
        events = [good(i) for i in range(3)]
        items = [
            orjson.dumps(events[0]),
            deep,
            orjson.dumps(events[1]),
            broken,
            orjson.dumps(events[2]),
            big,
        ]
        status, _, answer = post(ns, b"[" + b",\n ".join(items) + b"]")
        assert status == 200, answer
        assert [(r["index"], r["status"]) for r in answer["results"]] == [
            (0, "accepted"),
            (1, "rejected"),
            (2, "accepted"),
            (3, "rejected"),
            (4, "accepted"),
            (5, "rejected"),
        ]
        assert [r.get("reason") for r in answer["results"]] == [
            None,
            "not_json",
            None,
            "bad_encoding",
            None,
            "too_large",
        ]
        sent.append(([e["event_id"] for e in events], [deep, broken, big]))

        # hypothesis: a good event on both sides of each hostile element
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(hostile)
        def sandwiched(bad: bytes) -> None:
            pair = [good(0), good(1)]
            status, _, answer = post(
                ns, b"[" + orjson.dumps(pair[0]) + b"," + bad + b"," + orjson.dumps(pair[1]) + b"]"
            )
            assert status == 200, answer
            assert [r["status"] for r in answer["results"]] == [
                "accepted",
                "rejected",
                "accepted",
            ], answer
            sent.append(([e["event_id"] for e in pair], [bad]))

        sandwiched()

        accepted = [event_id for ids, _ in sent for event_id in ids]
        rejected = [raw for _, raws in sent for raw in raws]
        actions = ns.read_topic(ns.settings.actions_topic, expect=len(accepted), timeout=60)
        assert sorted(orjson.loads(r.value)["event_id"] for r in actions) == sorted(accepted)
        letters = [
            orjson.loads(r.value)
            for r in ns.read_topic(ns.settings.deadletter_topic, expect=len(rejected), timeout=60)
        ]
        assert len(letters) == len(rejected)
        by_hash = {letter["raw_sha256"]: letter for letter in letters}
        for raw in rejected:
            letter = by_hash[hashlib.sha256(raw).hexdigest()]  # the hash of the element as sent
            assert letter["topic"] == "POST /v1/events" and letter["raw_size"] == len(raw)
            assert raw_of(letter) == raw[: deadletter.MAX_RAW]  # its bytes, cut at the bound
            assert letter["raw_truncated"] == (len(raw) > deadletter.MAX_RAW)
        assert worker.alive()
    finally:
        worker.stop()
