"""Every fixed choice of the command line, as an Enum: typer lists the values in --help and
refuses any other (exit 2) before the command starts. Values that come from data (detector ids,
accounts) are checked by the command against what exists (`partnerwatch/known.py`)."""

from __future__ import annotations

from enum import StrEnum

from pipeline.contract import SEVERITIES


class Format(StrEnum):
    """Query output: a table, one `column: value` block per row (wide results), CSV or JSON lines."""

    table = "table"
    vertical = "vertical"
    csv = "csv"
    json = "json"


class ListFormat(StrEnum):
    """Output of listing commands: a table or JSON lines."""

    table = "table"
    json = "json"


class Severity(StrEnum):
    """Alert severities, lowest first (pipeline/contract.py SEVERITIES)."""

    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


if tuple(Severity) != SEVERITIES:
    raise RuntimeError("Severity must list pipeline.contract.SEVERITIES in order")


class TailSource(StrEnum):
    auto = "auto"
    sse = "sse"
    kafka = "kafka"


class KafkaAction(StrEnum):
    start = "start"
    stop = "stop"
    status = "status"
    reset = "reset"


class DigestPeriod(StrEnum):
    hour = "hour"
    day = "day"


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
