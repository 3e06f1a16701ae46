"""The latency bench's load producers (bench/latency_load.py, `Paced`) against the real broker:
each delivers every message once, with its key, in order per key, and says what it reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.alert_latency import latency
from bench.latency_load import LOADS, Paced
from partnerwatch.local_worker import Namespace
from sinks.kafka_io import ensure_topics


@pytest.mark.parametrize("load", LOADS)
def test_load_sends_every_message_once_in_key_order(
    kafka_broker: str, tmp_path: Path, load: str
) -> None:
    ns = Namespace(tmp_path)
    settings = ns.settings
    ensure_topics(settings)
    messages = [(f"acct-{i % 7}".encode(), f'{{"n":{i}}}'.encode()) for i in range(300)]
    paced = Paced(settings, settings.actions_topic, load)
    sent: list[int] = [0]
    try:
        rate = paced.send(messages, 3000, sent)
    finally:
        paced.close()
    assert sent[0] == len(messages)
    # 300 messages at 3,000/s take at least 0.1 s: the rate reached is at most the rate asked
    assert 0 < rate <= 3000 * 1.05
    records = ns.read_topic(settings.actions_topic, expect=len(messages), timeout=60)
    got = [(r.key, r.value) for r in records]
    assert sorted(got) == sorted(messages)  # each once
    for key in {k for k, _ in messages}:  # a key's messages in the order they were sent
        assert [v for k, v in got if k == key] == [v for k, v in messages if k == key]


def test_unknown_load_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown load producer 'nope'"):
        Paced(Namespace(tmp_path).settings, "t", "nope")


def test_unknown_stage_placement_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown provider stage placement 'nope'"):
        latency(tmp_path, 1000, 1, stage="nope")
