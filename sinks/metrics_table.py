"""The metrics table of docs/operations.md, generated from `sinks.metrics` so the docs cannot drift.

`python -m sinks.metrics_table` prints it; tests/observability/test_docs_observability.py
checks docs/operations.md holds exactly this table.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from sinks import metrics


def defined() -> list[MetricWrapperBase]:
    """Every metric object defined in sinks.metrics, in definition order."""
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def exposed_name(metric: MetricWrapperBase) -> str:
    name: str = metric._name
    return f"{name}_total" if metric._type == "counter" else name


def markdown_table() -> str:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in defined():
        labels = ", ".join(f"`{label}`" for label in m._labelnames) or "-"
        lines.append(f"| `{exposed_name(m)}` | {m._type} | {labels} | {m._documentation} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
