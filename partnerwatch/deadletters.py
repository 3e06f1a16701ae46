"""`deadletter tail|show`: the messages the worker rejected, and why.

`send --wait` (partnerwatch/ingest_cli.py) reports the dead letter of each message it sent; these
commands read the dead-letter topic itself.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer

from partnerwatch.choices import ListFormat
from partnerwatch.common import console, err, json_line, line, plain
from partnerwatch.common import load_settings as _settings
from pipeline.config import Settings
from pipeline.event import REASONS

deadletter_cli = typer.Typer(
    help="Dead letters: the messages the worker rejected, and why.", no_args_is_help=True
)


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
