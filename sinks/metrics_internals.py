"""Every private attribute of prometheus_client that PartnerWatch reads, in one place.

The metrics table of docs/operations.md is generated from the metric objects themselves
(sinks/metrics_table.py): their name, type, label names and help text, which prometheus_client
keeps in private attributes of `MetricWrapperBase`. Importing this module with another
prometheus_client than `TESTED` raises RuntimeError (pipeline/dependency_pins.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from pipeline.dependency_pins import require_tested

TESTED = {"prometheus-client": "0.26.0"}
require_tested(TESTED, __name__)


@dataclass(frozen=True)
class Described:
    """What a metric object says about itself."""

    name: str  # as defined, without the `_total` a counter is exposed with
    type: str  # counter, gauge, histogram, summary, ...
    labels: tuple[str, ...]
    documentation: str


def describe(metric: MetricWrapperBase) -> Described:
    return Described(
        metric._name, str(metric._type), tuple(metric._labelnames), metric._documentation
    )
