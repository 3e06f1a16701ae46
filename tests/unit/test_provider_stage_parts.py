"""The provider stage's pure parts: who holds the ledger, how its state is snapshotted, and
which partitions' ingest it waits for."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata

from detectors.provider_wide.run import Stage
from pipeline.config import DetectionConfig, Settings
from pipeline.event import normalize
from streams.ingest_backlog import BACKLOG_SECONDS, IngestBacklog, behind
from streams.provider_assignment import OneActive
from streams.provider_state import assemble, snapshot_records

SETTINGS_TOPICS = Settings.from_env({})


class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


def test_one_active_assignor_keeps_the_holder_and_gives_it_everything() -> None:
    members = {
        "a": ConsumerProtocolMemberMetadata(0, ["t"], b""),
        "b": ConsumerProtocolMemberMetadata(0, ["t"], b"1"),
        "c": ConsumerProtocolMemberMetadata(0, ["t"], b""),
    }
    out = OneActive.assign(Cluster(), members)  # type: ignore[arg-type]
    assert [tp.partition for tp in out["b"].partitions()] == [0, 1, 2, 3]
    assert out["a"].partitions() == [] and out["c"].partitions() == []
    members["b"] = ConsumerProtocolMemberMetadata(0, ["t"], b"")  # nobody holds: the first member
    out = OneActive.assign(Cluster(), members)  # type: ignore[arg-type]
    assert len(out["a"].partitions()) == 4 and out["b"].partitions() == []


def test_holding_is_claimed_in_the_join_metadata() -> None:
    try:
        OneActive.holding = True
        assert OneActive.metadata(["t"]).user_data == b"1"
        OneActive.holding = False
        assert OneActive.metadata(["t"]).user_data == b""
    finally:
        OneActive.holding = False


def states_after(events: list[dict[str, Any]]) -> dict[str, Any]:
    stage = Stage(DetectionConfig())
    for n, raw in enumerate(events):
        stage.observe(normalize({"event_id": f"e{n}", **raw}))
    return stage.states


def test_snapshot_records_round_trip_with_tombstones() -> None:
    provider = {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"}
    seller = {"type": "seller", "principal_id": "owner"}
    events = [
        {
            "occurred_at": "2026-11-02T08:00:00Z",
            "account_id": "A1",
            "actor": seller,
            "action": "permission.grant",
            "grant": {"grant_id": "g1", "provider_id": "prov-1", "scopes": ["listing.*"]},
        },
        {
            "occurred_at": "2026-11-02T08:01:00Z",
            "account_id": "A1",
            "actor": provider,
            "action": "auth.login",
            "source": {"ip": "91.64.10.7", "session_id": "s1"},
        },
    ]
    states = states_after(events)
    assert {"p|prov-1", "a|A1"} <= set(states) and states["p|prov-1"]["det"]
    topic: dict[str, Any] = {}
    for key, value in states.items():
        for record_key, record in snapshot_records(key, value):
            if record is None:
                topic.pop(record_key, None)
            else:
                topic[record_key] = record
    assert all(k.count("#") in (1, 2) for k in topic if k.startswith("p|"))
    assert assemble(topic) == states
    # a provider whose state is gone leaves tombstones for every record it wrote
    assert all(record is None for _, record in snapshot_records("p|prov-1", None))
    assert {k for k, _ in snapshot_records("p|prov-1", None)} >= {
        k for k in topic if k.startswith("p|prov-1#")
    }


def test_rules_folder_is_reloaded_when_a_file_changes_and_a_bad_change_is_refused(
    tmp_path: Path,
) -> None:
    from pipeline.config import Settings
    from sinks import metrics
    from streams.provider_stage import ProviderStage

    rule = """title: credentials
name: creds
logsource: {product: partnerwatch, service: ledger}
detection:
  s:
    action: auth.credentials_create
  condition: s
"""
    (tmp_path / "creds.yml").write_text(rule)
    stage = ProviderStage(Settings.from_env({"PW_RULES_DIR": str(tmp_path)}))
    stage.reload_rules()
    assert stage.sigma is not None and stage.sigma.ruleset.names == ["creds"]
    first = stage.sigma
    stage.reload_rules()
    assert stage.sigma is first  # nothing changed: not loaded again
    (tmp_path / "mfa.yml").write_text(
        rule.replace("credentials_create", "mfa_change").replace("name: creds", "name: mfa")
    )
    stage.reload_rules()
    assert stage.sigma is not first and stage.sigma.ruleset.names == ["creds", "mfa"]
    refused = metrics.SIGMA_RELOAD_FAILURES._value.get()
    (tmp_path / "bad.yml").write_text(
        rule.replace("action:", "colour:").replace("name: creds", "name: bad")
    )
    working = stage.sigma
    stage.reload_rules()
    assert stage.sigma is working and metrics.SIGMA_RELOAD_FAILURES._value.get() == refused + 1


def test_a_stage_whose_thread_ended_on_an_exception_makes_health_degraded() -> None:
    # A detector bug raised inside the stage's thread once ended provider-wide detection while
    # /v1/health still said "ok".
    from pipeline.config import Settings
    from streams.provider_stage import ProviderStage
    from streams.provider_stage_service import ProviderStageService
    from streams.warehouse_service import health

    settings = Settings.from_env({"PW_PROVIDER_STAGE": "worker"})
    service = ProviderStageService(settings)
    assert service.health() == {"status": "off", "error": ""}
    stage = service.stage = ProviderStage(settings)

    async def broken() -> None:
        raise TypeError("None object expected; got GeoIP2Fast")

    stage.run = broken  # type: ignore[method-assign]
    stage.start()
    stage._thread.join(30)
    assert service.health() == {
        "status": "stopped",
        "error": "TypeError: None object expected; got GeoIP2Fast",
    }
    status, body = health(
        None, True, external=True, warehouse_open=True, provider_stage=service.health()
    )
    assert status == 503 and body["status"] == "degraded"
    assert body["provider_stage"]["status"] == "stopped"
    running = {"status": "running", "error": ""}
    assert health(None, True, external=True, warehouse_open=True, provider_stage=running)[0] == 200


class _Offsets:
    """The group's committed offsets (`list_consumer_group_offsets`) and the partitions' ends."""

    def __init__(self) -> None:
        self.ends: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        #: the ledger partitions' last stable offsets
        self.ledger: dict[int, int] = {}
        self.calls: list[str] = []
        self.fail = False

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.calls.append(f"end_offsets {tps[0].topic}")
        if tps[0].topic == SETTINGS_TOPICS.ledger_topic:
            return {tp: self.ledger.get(tp.partition, 0) for tp in tps}
        return {tp: self.ends[tp.partition] for tp in tps}

    async def list_consumer_group_offsets(
        self, group: str, partitions: list[Any]
    ) -> dict[Any, Any]:
        self.calls.append("group offsets")
        if self.fail:
            raise KafkaConnectionError("the broker went away")
        return {
            tp: OffsetAndMetadata(self.committed[tp.partition], "")
            for tp in partitions
            if tp.partition in self.committed
        }


def test_ingest_is_behind_only_on_what_was_there_a_look_ago() -> None:
    # live traffic: events on their way through ingest (end moved on, not yet committed) are
    # not a backlog; a committed offset short of the previous look's end is
    assert behind({0: 110, 1: 110}, {0: 100, 1: 100}, {0: 100, 1: 90}) == {1}
    # the first look: the end as it is now; a partition the group never committed: offset 0
    assert behind({0: 110, 1: 0, 2: 5}, {}, {0: 100}) == {0, 2}
    # an end that went back (a recreated topic) is taken as it is now
    assert behind({0: 10}, {0: 100}, {0: 10}) == set()


def test_backlog_refresh_compares_with_the_previous_look_and_starts_over_after_a_pause() -> None:
    backlog = IngestBacklog(Settings.from_env({}))
    kafka = _Offsets()
    backlog._admin = kafka

    def look(ends: dict[int, int], committed: dict[int, int], *, paused: bool = False) -> set[int]:
        kafka.ends, kafka.committed = ends, committed
        # due now; `paused`: the previous look was long enough ago to be forgotten
        backlog._at = time.monotonic() - (10 * BACKLOG_SECONDS if paused else BACKLOG_SECONDS)
        asyncio.run(backlog.refresh(kafka, sorted(ends)))
        return backlog.partitions

    assert look({0: 100, 1: 100}, {0: 100, 1: 40}) == {1}
    assert look({0: 130, 1: 130}, {0: 120, 1: 90}) == {1}  # 0: behind 130 only, not 100
    assert look({0: 160, 1: 160}, {0: 125, 1: 130}) == {0}  # 0: behind 130, the last look's
    # after a pause the previous look says nothing about now: the end as it is now
    assert look({0: 5000, 1: 160}, {0: 160, 1: 160}, paused=True) == {0}


def test_backlog_refresh_reads_where_a_caught_up_ledger_ends_after_the_group_offsets() -> None:
    """A transaction commits a partition's ledger records with its source offset: read after
    the offsets, the ledger's end covers every record of a source offset read as committed.
    Only for partitions that stop being behind (or at a first look): not under live traffic."""
    backlog = IngestBacklog(SETTINGS_TOPICS)
    kafka = _Offsets()
    backlog._admin = kafka  # type: ignore[assignment]
    actions, ledger = SETTINGS_TOPICS.actions_topic, SETTINGS_TOPICS.ledger_topic

    def look(ends: dict[int, int], committed: dict[int, int], lso: dict[int, int]) -> list[str]:
        kafka.ends, kafka.committed, kafka.ledger, kafka.calls = ends, committed, lso, []
        backlog._at = time.monotonic() - BACKLOG_SECONDS
        asyncio.run(backlog.refresh(kafka, sorted(ends)))  # type: ignore[arg-type]
        return kafka.calls

    # the first look: 0 caught up already (its ledger end read, after the offsets), 1 behind
    calls = look({0: 100, 1: 100}, {0: 100, 1: 40}, {0: 7, 1: 3})
    assert calls == [f"end_offsets {actions}", "group offsets", f"end_offsets {ledger}"]
    assert backlog.partitions == {1} and backlog.ledger_ends == {0: 7}
    # nothing changed: no ledger end read (live traffic costs no more than before)
    assert look({0: 100, 1: 100}, {0: 100, 1: 60}, {0: 7, 1: 5}) == calls[:2]
    # 1 caught up: its end; 0's is kept until the merge has fetched up to it
    assert look({0: 100, 1: 100}, {0: 100, 1: 100}, {0: 7, 1: 9})[2:] == [f"end_offsets {ledger}"]
    assert backlog.partitions == set() and backlog.ledger_ends == {0: 7, 1: 9}
    assert not backlog.reached(0, 6) and backlog.ledger_ends == {0: 7, 1: 9}
    assert backlog.reached(0, 7) and backlog.ledger_ends == {1: 9}
    assert backlog.reached(2, 0)  # never behind: nothing to wait for
    # a look that fails: none behind, the ends read before stay (they are facts), and the
    # next look is a first look again
    kafka.fail = True
    look({0: 100, 1: 100}, {0: 100, 1: 100}, {})
    assert backlog.partitions == set() and backlog.ledger_ends == {1: 9}
    kafka.fail = False
    look({0: 100, 1: 100}, {0: 100, 1: 100}, {0: 8, 1: 9})
    assert backlog.ledger_ends == {0: 8, 1: 9}
