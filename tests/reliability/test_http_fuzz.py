"""Fuzz POST /v1/events on a real worker: it stays up, every rejected event is dead-lettered and
every accepted one sequenced and stored, exactly (counts asserted, chains verified).

Bodies are hypothesis-generated: arrays of 1-20 events mixing valid simulator events, near-valid
ones with fields mutated, random JSON, and whole bodies of invalid UTF-8, deep nesting or huge
strings. The quick variant (120 requests) runs in the default suite; the long one (1,500
requests, `reliability`) in `make reliability`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.event import REASONS, Rejected, parse_action
from pipeline.simulation.traffic import generate
from sources.http_batch import split_batch
from tests.integration.test_http_ingest import http_env, post
from tests.integration.test_pipeline import assert_chains_verify
from tests.reliability.test_validator_fuzz import (
    deep_nesting,
    huge_strings,
    invalid_utf8,
    ipv6_forms,
    time_zones,
)
from tests.unit.test_event import json_values, near_valid_docs

POOL = [e for e, _ in generate(3_000, seed=77)]


def _valid(index: int, serial: int) -> dict[str, Any]:
    return {**POOL[index % len(POOL)], "event_id": f"fz-{serial}"}


_serial = itertools.count()
items = st.one_of(
    st.integers(0, len(POOL) - 1).map(lambda i: _valid(i, next(_serial))),
    st.integers(0, len(POOL) - 1).map(lambda i: _valid(i, next(_serial))),
    near_valid_docs,
    json_values,
    time_zones,
    ipv6_forms,
)
bodies = st.one_of(
    st.lists(items, min_size=1, max_size=20).map(orjson.dumps),
    st.lists(items, min_size=1, max_size=20).map(orjson.dumps),
    st.lists(items, min_size=1, max_size=20).map(orjson.dumps),
    invalid_utf8,
    deep_nesting,
    huge_strings.filter(lambda b: len(b) < 60_000),
)


def elements(body: bytes) -> list[bytes]:
    """The events of a body as the endpoint splits them (array elements as sent, or the body itself;
    tests/security/test_ingest_batch.py checks the splitting itself)."""
    return split_batch(body)


def run_http_fuzz(tmp_path: Path, requests: int) -> None:
    ns = Namespace(tmp_path, extra_env=http_env(PW_HTTP_RATE="0", PW_HTTP_MAX_BODY_BYTES="2000000"))
    worker = Worker(ns).start()
    stored: set[tuple[str, str]] = set()  # (account, event_id) accepted
    tally = {"requests": 0, "accepted": 0, "rejected": 0}
    try:

        @settings(
            max_examples=requests,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(bodies)
        def one(body: bytes) -> None:
            status, _, answer = post(ns, body)
            tally["requests"] += 1
            assert status == 200, (status, answer)
            events = elements(body)
            assert len(answer["results"]) == len(events)
            for result, raw in zip(answer["results"], events, strict=True):
                if result["status"] == "accepted":
                    event = parse_action(raw)
                    stored.add((event["account_id"], event["event_id"]))
                    tally["accepted"] += 1
                else:
                    assert result["reason"] in REASONS
                    with pytest.raises(Rejected):
                        parse_action(raw)
                    tally["rejected"] += 1

        one()
        assert worker.alive()
        print(f"http fuzz: {tally}, distinct accepted events {len(stored)}")
        assert (
            tally["requests"] >= requests * 0.9 and tally["accepted"] > 0 and tally["rejected"] > 0
        )
        letters = ns.read_topic(ns.settings.deadletter_topic, expect=tally["rejected"], timeout=120)
        assert len(letters) == tally["rejected"]
        assert {orjson.loads(r.value)["topic"] for r in letters} == {"POST /v1/events"}
        actions = ns.read_topic(ns.settings.actions_topic, expect=tally["accepted"], timeout=120)
        assert len(actions) == tally["accepted"]
        try:
            wait_for(
                lambda: ns.scalar("SELECT count() FROM audit.events") >= len(stored),
                300,
                "accepted events stored",
            )
        except AssertionError as exc:
            have = {tuple(r) for r in ns.sql("SELECT account_id, event_id FROM audit.events")}
            later = ns.read_topic(ns.settings.deadletter_topic, expect=10**9, timeout=5)
            worker_letters = [
                orjson.loads(r.value)
                for r in later
                if orjson.loads(r.value)["topic"] != "POST /v1/events"
            ]
            raise AssertionError(
                f"{exc}: missing {sorted(stored - have)[:5]!r}; dead-lettered by the worker: "
                f"{[(d.get('reason'), d.get('detail')) for d in worker_letters][:5]!r}"
            ) from None
        assert (
            ns.sql("SELECT count(), uniqExact(account_id, event_id) FROM audit.events")[0]
            == [len(stored)] * 2
        )
        assert {tuple(r) for r in ns.sql("SELECT account_id, event_id FROM audit.events")} == stored
        assert_chains_verify(ns)
        assert worker.alive()
    finally:
        worker.stop()


@pytest.mark.integration
def test_http_fuzz_quick(kafka_broker: str, tmp_path: Path) -> None:
    run_http_fuzz(tmp_path, 120)


@pytest.mark.reliability
def test_http_fuzz_full(kafka_broker: str, tmp_path: Path) -> None:
    run_http_fuzz(tmp_path, 1_500)
