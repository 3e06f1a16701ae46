"""One partition's ingest work without Kafka (streams/ingest_batch.py): what a batch produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from detectors.run import apply_entry, new_state
from pipeline.config import Settings
from pipeline.ledger import verify
from pipeline.simulation.traffic import ATTACKS, generate
from streams.ingest_batch import Ingest, PartitionState
from streams.state_gap import StateGap


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int = 0


def records(events: list[dict[str, Any]], start: int = 0) -> list[Rec]:
    return [Rec(e["account_id"].encode(), orjson.dumps(e), start + i) for i, e in enumerate(events)]


SETTINGS = Settings.from_env({})


def test_a_batch_gives_entries_dead_letters_state_and_alerts_that_a_replay_agrees_with() -> None:
    events = [e for e, _ in generate(3_000, seed=9, attack_rate=0.01, attack_kinds=ATTACKS)]
    ingest, state = Ingest(SETTINGS), PartitionState(0, 7)
    batch = records(events)
    batch.insert(100, Rec(b"wrong-key", orjson.dumps(events[0]), -1))
    for i, rec in enumerate(batch):
        rec.offset = i
    batch.append(
        Rec(events[5]["account_id"].encode(), orjson.dumps(events[5]), len(batch))
    )  # a repeat
    first = ingest.batch(state, batch[:1_500])
    second = ingest.batch(state, batch[1_450:])  # 50 redelivered: skipped by offset
    assert first.consumed + second.consumed == len(batch)
    assert first.accepted + second.accepted == 3_000
    assert second.duplicates == 1
    assert [orjson.loads(v)["reason"] for _, v in first.deadletters] == ["wrong_key"]
    assert second.next_offset == len(batch)
    entries = [orjson.loads(v) for _, v in first.ledger + second.ledger]
    by_account: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_account.setdefault(entry["account_id"], []).append(entry)
    for rows in by_account.values():  # every account's chain verifies from seq 1
        rows_in = [
            (
                e["seq"],
                e["event_id"],
                e["prev_hash"],
                e["hash"],
                e["ingested_at"],
                orjson.dumps(
                    {
                        k: v
                        for k, v in e.items()
                        if k not in ("seq", "prev_hash", "hash", "ingested_at", "ingest_offset")
                    },
                    option=orjson.OPT_SORT_KEYS,
                ),
            )
            for e in rows
        ]
        assert verify(rows_in) is None
    # detection state and open alerts: what folding the ledger from scratch gives
    states: dict[str, Any] = {}
    alerts: dict[str, Any] = {}
    for entry in entries:
        applied = apply_entry(
            states.setdefault(entry["account_id"], new_state()),
            entry,
            SETTINGS.detect,
            None,
            alerts.get,
        )
        assert applied is not None
        for alert in applied.alerts:
            alerts[alert["alert_id"]] = alert
        for key in applied.closed:
            alerts.pop(key, None)
    assert orjson.loads(orjson.dumps(state.accounts)) == orjson.loads(orjson.dumps(states))
    assert state.open_alerts == alerts
    published = [orjson.loads(v) for _, v, _ in first.alerts + second.alerts]
    assert published and {a["alert_id"] for a in published} >= set(alerts)


def test_a_state_with_a_gap_before_the_entry_is_never_folded_into() -> None:
    events = [e for e, _ in generate(200, seed=4)]
    ingest, state = Ingest(SETTINGS), PartitionState(0, 7)
    ingest.batch(state, records(events[:100]))
    account = events[100]["account_id"]
    state.accounts[account]["seq"] -= 2  # as if two entries had not reached the state
    with pytest.raises(StateGap):
        ingest.batch(state, records(events[100:], start=100))
