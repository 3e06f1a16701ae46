"""`send`, `validate` and `deadletter tail|show`: putting a file of events in, and seeing what the
worker did with each one.

`validate FILE` (and `send --dry-run`) checks every line with the worker's own validator
(`pipeline.event.parse_action`), offline. `send --wait` produces the file and then waits for the
worker's verdict on every message: its ledger entry (accepted, with `seq`), its dead letter
(reason and detail), or neither once the worker's consumer group has committed past it (a repeat
of an `event_id` already accepted: stored once). The three outputs commit in one Kafka
transaction with the worker's source offsets, so reading them after the group's offset is exact.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from partnerwatch.choices import ListFormat
from partnerwatch.common import console, err, json_line, line, plain
from partnerwatch.common import load_settings as _settings
from pipeline.config import Settings
from pipeline.event import REASONS, Rejected, parse_action

deadletter_cli = typer.Typer(
    help="Dead letters: the messages the worker rejected, and why.", no_args_is_help=True
)


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
        self.admin = admin(settings, role="send-wait-admin")
        self.start = _end_offsets(self.consumer, [settings.ledger_topic, settings.deadletter_topic])
        self.consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()

    def _committed(self) -> dict[int, int]:
        group = self.settings.worker_group
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
            committed = self._committed()  # first: whatever it covers is readable below
            ends = self.consumer.end_offsets(list(self.start))
            drain_until = time.monotonic() + 5  # an open transaction may hold the end back
            while (
                any(self.consumer.position(tp) < end for tp, end in ends.items())
                and time.monotonic() < drain_until
            ):
                for tp, records in self.consumer.poll(timeout_ms=500).items():
                    for record in records:
                        self._observe(tp.topic, record, by_position)
            for s in sent:
                if s.verdict == "pending" and committed.get(s.partition, -1) > s.offset:
                    s.verdict, s.detail = "repeat", "an event_id already accepted: stored once"
            if any(s.verdict == "pending" for s in sent):
                time.sleep(0.3)

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


# -- deadletter tail | show -----------------------------------------------------------------------


def _dead_consumer(settings: Settings) -> Any:
    from sinks.kafka_io import consumer

    return consumer(settings, role="deadletter")


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@deadletter_cli.command("tail")
def deadletter_tail(
    follow: Annotated[
        bool, typer.Option(help="keep printing new dead letters (--no-follow: stop at the end)")
    ] = True,
    from_now: Annotated[bool, typer.Option(help="only dead letters from now on")] = False,
    reason: Annotated[list[str] | None, typer.Option(help="only this reason (repeatable)")] = None,
    fmt: Annotated[
        ListFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = ListFormat.table,
) -> None:
    """Print rejected messages with their reason: `P:O` (their place on the dead-letter topic, for
    `deadletter show`), when, reason, detail, and the start of the message; with --no-follow, a
    count by reason at the end."""
    from kafka import TopicPartition

    from partnerwatch.preflight import kafka_errors, require_broker

    for r in reason or []:
        if r not in REASONS:
            from partnerwatch.known import refuse

            raise refuse("reason", r, REASONS, "--reason")
    settings = _settings()
    require_broker(settings)
    counts: dict[str, int] = {}
    with kafka_errors(settings):
        consumer = _dead_consumer(settings)
        try:
            partitions = [
                TopicPartition(settings.deadletter_topic, p)
                for p in sorted(consumer.partitions_for_topic(settings.deadletter_topic) or ())
            ]
            if not partitions:
                err.print(
                    f"no topic {settings.deadletter_topic} yet (`partnerwatch topics` creates it)",
                    style="yellow",
                )
                return
            consumer.assign(partitions)
            if from_now:
                consumer.seek_to_end()
            else:
                consumer.seek_to_beginning()
            ends = consumer.end_offsets(partitions)
            try:
                while follow or any(consumer.position(tp) < end for tp, end in ends.items()):
                    for tp, records in consumer.poll(timeout_ms=500).items():
                        for record in records:
                            _show_dead(record, tp.partition, reason, fmt, counts)
            except KeyboardInterrupt:
                pass
        finally:
            consumer.close()
    if not follow and fmt == ListFormat.table:
        total = sum(counts.values())
        by_reason = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        err.print(
            f"{total} dead letter(s)" + (f": {by_reason}" if by_reason else ""), highlight=False
        )


def _show_dead(
    record: Any, partition: int, reasons: list[str] | None, fmt: ListFormat, counts: dict[str, int]
) -> None:
    try:
        doc = orjson.loads(record.value)
        if not isinstance(doc, dict):
            raise TypeError("not an object")
    except (orjson.JSONDecodeError, TypeError):
        err.print(f"{partition}:{record.offset}: not a dead-letter record", style="yellow")
        return
    if reasons and doc.get("reason") not in reasons:
        return
    counts[str(doc.get("reason"))] = counts.get(str(doc.get("reason")), 0) + 1
    if fmt == ListFormat.json:
        sys.stdout.write(json_line({"position": f"{partition}:{record.offset}", **doc}) + "\n")
        return
    console.print(
        line(
            plain(f"{partition}:{record.offset}", "dim"),
            " ",
            plain(str(doc.get("rejected_at", ""))[:19], "dim"),
            " ",
            plain(str(doc.get("reason")), "bold red"),
            " ",
            plain(_short(str(doc.get("detail", "")), 80)),
            "\n    ",
            plain(_short(str(doc.get("raw", "")), 100), "dim"),
        ),
        highlight=False,
    )


@deadletter_cli.command("show")
def deadletter_show(
    position: Annotated[
        str,
        typer.Argument(
            help="PARTITION:OFFSET on the dead-letter topic (the first column of `deadletter tail`)"
        ),
    ],
) -> None:
    """One dead letter in full: reason, detail, where the message came from, and the message itself."""
    from kafka import TopicPartition

    from partnerwatch.preflight import kafka_errors, require_broker

    part, sep, off = position.partition(":")
    if not (sep and part.isdigit() and off.isdigit()):
        err.print(
            line(
                "[red]give the position as PARTITION:OFFSET, e.g. 0:17, not[/] ",
                plain(repr(position), "red"),
            )
        )
        raise typer.Exit(2)
    settings = _settings()
    require_broker(settings)
    with kafka_errors(settings):
        consumer = _dead_consumer(settings)
        try:
            tp = TopicPartition(settings.deadletter_topic, int(part))
            if int(part) not in (consumer.partitions_for_topic(settings.deadletter_topic) or set()):
                err.print(
                    line(
                        "[red]no partition[/] ",
                        plain(part, "red"),
                        " of ",
                        plain(settings.deadletter_topic),
                    )
                )
                raise typer.Exit(1)
            consumer.assign([tp])
            end = consumer.end_offsets([tp])[tp]
            record = None
            if int(off) < end:
                consumer.seek(tp, int(off))
                deadline = time.monotonic() + 10
                while record is None and time.monotonic() < deadline:
                    for r in consumer.poll(timeout_ms=500).get(tp, []):
                        if r.offset == int(off):
                            record = r
                            break
                        if r.offset > int(off):
                            deadline = 0  # compacted away or a transaction marker
                            break
        finally:
            consumer.close()
    if record is None:
        err.print(
            line(
                "[red]no dead letter at[/] ",
                plain(position, "red"),
                " (`deadletter tail --no-follow` lists them)",
            )
        )
        raise typer.Exit(1)
    doc = orjson.loads(record.value)
    for key in (
        "reason",
        "detail",
        "rejected_at",
        "topic",
        "partition",
        "offset",
        "raw_size",
        "raw_sha256",
        "raw_encoding",
        "raw_truncated",
    ):
        if key in doc:
            console.print(
                line(plain(f"{key:>13}", "dim"), ": ", plain(doc[key])),
                highlight=False,
                soft_wrap=True,
            )
    console.print(plain("          raw:", "dim"))
    console.print(plain(doc.get("raw", "")), highlight=False, soft_wrap=True)
