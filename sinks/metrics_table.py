"""The metrics table of docs/operations.md, generated from `sinks.metrics` so the docs cannot drift.

`python -m sinks.metrics_table` prints it; tests/observability/test_docs_observability.py
checks docs/operations.md holds exactly this table.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from sinks import metrics
from sinks.metrics_internals import describe


def defined() -> list[MetricWrapperBase]:
    """Every metric object defined in sinks.metrics, in definition order."""
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def exposed_name(metric: MetricWrapperBase) -> str:
    d = describe(metric)
    return f"{d.name}_total" if d.type == "counter" else d.name


def markdown_table() -> str:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in defined():
        d = describe(m)
        labels = ", ".join(f"`{label}`" for label in d.labels) or "-"
        lines.append(f"| `{exposed_name(m)}` | {d.type} | {labels} | {d.documentation} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
