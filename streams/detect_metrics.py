"""Metrics of detection (streams/ingest_batch.py), kept off its hot path.

Timing 19 detectors on every event would cost more than some detectors do, so one event in
`metrics.DETECTOR_SAMPLE_EVERY` is timed (`sample()` returns a dict to fill, else None) and each
detector's time on it is observed once. Alert latency is measured from the Kafka timestamp of
the `pw.actions` record that triggered the alert (CreateTime: when its producer sent it) to the
moment the alert is handed to the alert publisher, which sends it at once (streams/alert_publisher.py).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Histogram

from sinks import metrics


class DetectMetrics:
    """Sampling counter and per-detector histogram children (a `labels()` call costs a lock)."""

    def __init__(self, every: int = metrics.DETECTOR_SAMPLE_EVERY) -> None:
        self.every = max(1, every)
        self._seen = 0
        self._children: dict[str, Histogram] = {}

    def sample(self) -> dict[str, float] | None:
        """A dict for `observe(..., timings=...)` on one event in `every`, else None."""
        self._seen += 1
        if self._seen >= self.every:
            self._seen = 0
            return {}
        return None

    def record(self, timings: dict[str, float] | None) -> None:
        if not timings:
            return
        for detector, seconds in timings.items():
            child = self._children.get(detector)
            if child is None:
                child = self._children[detector] = metrics.DETECTOR_SECONDS.labels(detector)
            child.observe(seconds)

    @staticmethod
    def alert_published(message: Any) -> None:
        """Observe the latency of an alert triggered by the source record `message`."""
        timestamp = getattr(message, "timestamp", None)
        if timestamp:
            metrics.ALERT_LATENCY.observe(max(0.0, time.time() - float(timestamp)))
