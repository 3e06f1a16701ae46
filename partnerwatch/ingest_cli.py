"""`send` and `validate`: putting a file of events in, and seeing what the worker did with each
one (`deadletter tail|show` is in partnerwatch/deadletters.py).

`validate FILE` (and `send --dry-run`) checks every line with the worker's own validator
(`pipeline.event.parse_action`), offline. `send --wait` produces the file and then waits for the
worker's verdict on every message: its ledger entry (accepted, with `seq`), its dead letter
(reason and detail), or neither once the worker's consumer group has committed past it (a repeat
of an `event_id` already accepted: stored once). The three outputs commit in one Kafka
transaction with the worker's source offsets. Kafka writes that transaction's commit markers
to each partition separately, so the group's offset can be visible before the ledger entry is:
a repeat is only concluded once the ledger and the dead letters have been read up to every
record written before the offset was seen (their high watermarks then, not their committed ends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from partnerwatch.common import console, err, line, plain
from partnerwatch.common import load_settings as _settings
from pipeline.config import Settings
from pipeline.event import Rejected, parse_action


@dataclass
class Line:
    """One non-empty line of an events file and the local validator's view of it."""

    number: int
    raw: bytes
    event_id: str | None
    account_id: str | None
    problem: Rejected | None


def read_lines(file: Path, max_bytes: int) -> list[Line]:
    out = []
    with file.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            raw = raw_line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            event_id = account_id = None
            problem = None
            try:
                event = parse_action(raw, max_bytes)
                event_id, account_id = str(event["event_id"]), str(event["account_id"])
            except Rejected as exc:
                problem = exc
            out.append(Line(number, raw, event_id, account_id, problem))
    return out


def report_validation(file: Path, lines: list[Line]) -> int:
    """Print each line the worker would dead-letter, and repeats; return how many are invalid."""
    bad = [item for item in lines if item.problem is not None]
    for item in bad:
        if item.problem is None:
            continue
        err.print(
            line(
                plain(f"{file.name}:{item.number}: ", "red"),
                plain(item.problem.reason, "bold red"),
                ": ",
                plain(item.problem.detail),
            ),
            soft_wrap=True,
            highlight=False,
        )
    first: dict[tuple[str | None, str | None], int] = {}
    for item in lines:
        if item.event_id is None:
            continue
        key = (item.account_id, item.event_id)
        if key in first:
            err.print(
                line(
                    plain(f"{file.name}:{item.number}: ", "yellow"),
                    "repeats event_id ",
                    plain(item.event_id),
                    f" of line {first[key]} (stored once)",
                ),
                soft_wrap=True,
                highlight=False,
            )
        else:
            first[key] = item.number
    return len(bad)


def validate(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, one event per line")
    ],
) -> None:
    """Check a file of events offline with the worker's own validator: each line that would be
    dead-lettered, with its reason (exit 1 if any); nothing is sent."""
    settings = _settings()
    lines = read_lines(file, settings.max_event_bytes)
    bad = report_validation(file, lines)
    summary = (
        f"{file.name}: {len(lines)} events, {len(lines) - bad} valid, {bad} would be dead-lettered"
    )
    console.print(plain(summary, "red" if bad else "green"), highlight=False)
    if bad:
        raise typer.Exit(1)


@dataclass
class Sent:
    line: Line
    partition: int
    offset: int
    verdict: str = "pending"  # accepted | dead-lettered | repeat | pending
    detail: str = ""


def _end_offsets(consumer: Any, topics: list[str]) -> dict[Any, int]:
    from kafka import TopicPartition

    partitions = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    return dict(consumer.end_offsets(partitions)) if partitions else {}


def produce(settings: Settings, lines: list[Line]) -> list[Sent]:
    """Send each line as it is (key: its account_id when it parses); where each one landed."""
    from sinks.kafka_io import action_key, producer

    prod = producer(settings)
    try:
        futures = []
        for item in lines:
            try:
                doc = orjson.loads(item.raw)
                key = action_key(doc) if isinstance(doc, dict) else b""
            except orjson.JSONDecodeError:
                key = b""
            futures.append((item, prod.send(settings.actions_topic, key=key, value=item.raw)))
        prod.flush()
        sent = []
        for item, future in futures:
            meta = future.get(timeout=30)
            sent.append(Sent(item, meta.partition, meta.offset))
        return sent
    finally:
        prod.close()


class Verdicts:
    """Follows the ledger and the dead-letter topic from before a send, and the worker's group."""

    def __init__(self, settings: Settings) -> None:
        from sinks.kafka_io import admin, consumer

        self.settings = settings
        self.consumer = consumer(settings, role="send-wait")
        # the high watermarks: every record written, in open transactions too
        self.written = consumer(settings, role="send-wait-ends", isolation_level="read_uncommitted")
        self.admin = admin(settings, role="send-wait-admin")
        self.start = _end_offsets(self.consumer, [settings.ledger_topic, settings.deadletter_topic])
        self.consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)

    def close(self) -> None:
        self.consumer.close()
        self.written.close()
        self.admin.close()

    def _committed(self) -> dict[int, int]:
        group = self.settings.ingest_group
        offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.settings.actions_topic
        }

    def wait(self, sent: list[Sent], timeout: float) -> None:
        by_position = {(s.partition, s.offset): s for s in sent}
        deadline = time.monotonic() + timeout
        while any(s.verdict == "pending" for s in sent) and time.monotonic() < deadline:
            committed = self._committed()  # first: the outputs of what it covers were written
            written = self.written.end_offsets(list(self.start))  # ... below these offsets
            drain_until = min(deadline, time.monotonic() + 5)
            while (
                not self._read_up_to(written)
                and any(s.verdict == "pending" for s in sent)
                and time.monotonic() < drain_until
            ):
                for tp, records in self.consumer.poll(timeout_ms=500).items():
                    for record in records:
                        self._observe(tp.topic, record, by_position)
            if self._read_up_to(written):  # every transaction open then has ended: exact
                for s in sent:
                    if s.verdict == "pending" and committed.get(s.partition, -1) > s.offset:
                        s.verdict, s.detail = "repeat", "an event_id already accepted: stored once"
            if any(s.verdict == "pending" for s in sent):
                time.sleep(0.3)

    def _read_up_to(self, written: dict[Any, int]) -> bool:
        """Has the read-committed consumer passed every record below `written` (committed ones
        read, aborted ones and commit markers skipped)?"""
        return all(self.consumer.position(tp) >= end for tp, end in written.items())

    def _observe(self, topic: str, record: Any, by_position: dict[tuple[int, int], Sent]) -> None:
        try:
            doc = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if topic == self.settings.ledger_topic:
            s = by_position.get((record.partition, doc.get("ingest_offset", -1)))
            if s is not None:
                s.verdict, s.detail = "accepted", f"seq {doc.get('seq')}"
        elif doc.get("topic") == self.settings.actions_topic:
            s = by_position.get((doc.get("partition", -1), doc.get("offset", -1)))
            if s is not None:
                s.verdict, s.detail = "dead-lettered", f"{doc.get('reason')}: {doc.get('detail')}"


def send(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, one event per line")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate only (like `validate FILE`); send nothing")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="wait for the worker's verdict on each line: accepted, dead-lettered (why) or a repeat",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="--wait: seconds to wait for the verdicts")
    ] = 60.0,
) -> None:
    """Produce a file of events to pw.actions, as they are (lines the worker rejects reach the
    dead-letter topic: `deadletter tail`). Lines that fail validation here are named first."""
    from partnerwatch.preflight import kafka_errors, require_broker

    settings = _settings()
    lines = read_lines(file, settings.max_event_bytes)
    bad = report_validation(file, lines)
    if dry_run:
        console.print(
            plain(
                f"{file.name}: {len(lines)} events, {len(lines) - bad} valid, {bad} would be dead-lettered; nothing sent (--dry-run)"
            ),
            highlight=False,
        )
        raise typer.Exit(1 if bad else 0)
    require_broker(settings)
    with kafka_errors(settings):
        from sinks.kafka_io import ensure_topics

        ensure_topics(settings)
        verdicts = Verdicts(settings) if wait else None
        try:
            sent = produce(settings, lines)
            if verdicts is None:
                note = (
                    f"; {bad} of them fail validation and will be dead-lettered (above)"
                    if bad
                    else ""
                )
                err.print(
                    f"sent {len(sent)} messages to {settings.actions_topic}{note}; `--wait` reports what the worker did with each",
                    highlight=False,
                )
                return
            err.print(
                f"sent {len(sent)} messages to {settings.actions_topic}; waiting for the worker's verdicts",
                highlight=False,
            )
            verdicts.wait(sent, timeout)
        finally:
            if verdicts is not None:
                verdicts.close()
    _report_verdicts(file, sent, timeout)


def _report_verdicts(file: Path, sent: list[Sent], timeout: float) -> None:
    counts: dict[str, int] = {}
    for s in sent:
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
        if s.verdict != "accepted":
            style = "yellow" if s.verdict == "repeat" else "red"
            err.print(
                line(
                    plain(f"{file.name}:{s.line.number}: ", style),
                    plain(s.verdict, f"bold {style}"),
                    " ",
                    plain(s.detail),
                ),
                soft_wrap=True,
                highlight=False,
            )
    order = ("accepted", "dead-lettered", "repeat", "pending")
    summary = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    console.print(
        plain(
            f"{file.name}: {summary}",
            "green" if counts.get("accepted", 0) == len(sent) else "yellow",
        ),
        highlight=False,
    )
    if counts.get("pending"):
        err.print(
            f"no verdict within {timeout:g} s for {counts['pending']} message(s): is the worker running (`partnerwatch worker`)?",
            style="red",
            highlight=False,
        )
        raise typer.Exit(3)
    if counts.get("dead-lettered"):
        raise typer.Exit(1)
