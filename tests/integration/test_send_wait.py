"""`send --wait` (`partnerwatch.ingest_cli.Verdicts`) against the real broker, in the state a
worker's transaction passes through: Kafka writes the commit markers of one transaction to each
partition separately, so the group's offset for a message can be visible while the ledger entry
written in the same transaction is not yet. That message is not a repeat: it stays pending
until the entry can be read, then it is accepted. A message past the group's offset with no
entry and no dead letter is a repeat (the CI once saw all five quickstart events called
repeats while their entries were a marker away)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from partnerwatch.ingest_cli import Line, Sent, Verdicts
from partnerwatch.local_worker import Namespace
from pipeline.config import Settings
from sinks.kafka_io import connection, ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_broker: str, tmp_path: Path) -> Iterator[Settings]:
    settings = Namespace(tmp_path).settings
    ensure_topics(settings)
    yield settings


def produce_action(settings: Settings, partition: int) -> Sent:
    producer = KafkaProducer(**connection(settings))
    try:
        meta = producer.send(
            settings.actions_topic, value=b'{"event_id": "e"}', partition=partition
        ).get(timeout=30)
    finally:
        producer.close()
    return Sent(Line(1, b"{}", "e", "A1", None), meta.partition, meta.offset)


def commit_group_offset(settings: Settings, sent: Sent) -> None:
    """The worker's group offset past `sent`, committed outside any transaction."""
    tp = TopicPartition(settings.actions_topic, sent.partition)
    group = KafkaConsumer(**connection(settings), group_id=settings.ingest_group)
    try:
        group.assign([tp])
        group.commit({tp: OffsetAndMetadata(sent.offset + 1, "", -1)})
    finally:
        group.close()


def entry_in_open_transaction(settings: Settings, sent: Sent, seq: int) -> KafkaProducer:
    """A transactional producer with `sent`'s ledger entry written and its transaction open."""
    ledger = KafkaProducer(**connection(settings), transactional_id=f"t-{uuid.uuid4().hex}")
    ledger.init_transactions()
    ledger.begin_transaction()
    entry = {"ingest_offset": sent.offset, "seq": seq}
    ledger.send(
        settings.ledger_topic, key=b"A1", value=orjson.dumps(entry), partition=sent.partition
    ).get(30)
    return ledger


def test_an_entry_behind_an_open_transaction_is_not_a_repeat(settings: Settings) -> None:
    verdicts = Verdicts(settings)
    sent = produce_action(settings, 0)
    ledger = entry_in_open_transaction(settings, sent, seq=7)
    try:
        commit_group_offset(settings, sent)  # visible before the ledger's commit marker

        verdicts.wait([sent], timeout=4)
        assert sent.verdict == "pending", sent.detail

        ledger.commit_transaction()
        verdicts.wait([sent], timeout=30)
        assert (sent.verdict, sent.detail) == ("accepted", "seq 7")

        # past the group's offset, with no entry and no dead letter: a repeat, and concluded
        # although the ledger's last record is a commit marker (the reader skips it)
        repeat = produce_action(settings, 0)
        commit_group_offset(settings, repeat)
        verdicts.wait([repeat], timeout=30)
        assert repeat.verdict == "repeat", repeat.detail
    finally:
        ledger.close()
        verdicts.close()


def test_an_aborted_transaction_leaves_a_repeat_decidable(settings: Settings) -> None:
    verdicts = Verdicts(settings)
    sent = produce_action(settings, 1)
    ledger = entry_in_open_transaction(settings, sent, seq=1)
    try:
        ledger.abort_transaction()  # the entry never counts
        commit_group_offset(settings, sent)
        verdicts.wait([sent], timeout=30)
        assert sent.verdict == "repeat", sent.detail
    finally:
        ledger.close()
        verdicts.close()
