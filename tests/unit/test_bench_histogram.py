"""bench/procstats.py's histogram readings: a worker's /metrics histogram between two readings,
its mean and quantiles interpolated within the buckets (the latency bench's transaction times);
a labelled counter read by label, and the provider stage's held seconds between two readings
(bench/alert_latency.py)."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from bench.alert_latency import held_between
from bench.procstats import by_label, histogram, histogram_figures

BUCKETS = (0.005, 0.01, 0.02, 0.05)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_histogram_read_off_metrics_gives_what_was_observed_between_two_readings() -> None:
    registry = CollectorRegistry()
    seconds = Histogram("pw_test_seconds", "test", buckets=BUCKETS, registry=registry)
    port = _port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        for _ in range(5):  # before the first reading: not counted
            seconds.observe(0.04)
        before = histogram(port, "pw_test_seconds")
        assert before["count"] == 5 and before["0.05"] == 5
        for _ in range(10):
            seconds.observe(0.004)
        for _ in range(10):
            seconds.observe(0.015)
        after = histogram(port, "pw_test_seconds")
        absent = histogram(port, "pw_absent_seconds")
    finally:
        server.shutdown()
        thread.join(5)
    figures = histogram_figures(after, before)
    assert figures == {
        "count": 20,
        "mean_ms": 9.5,
        "p50_ms": 5.0,  # the 10th of 20 is the last in (0, 5 ms]
        "p90_ms": 18.0,  # the 18th: 8 of the 10 in (10, 20 ms]
        "p99_ms": 19.8,
    }
    assert histogram_figures(after, after) is None  # nothing observed in between
    assert absent == {}


def test_a_quantile_beyond_the_last_bucket_is_not_made_up() -> None:
    before: dict[str, float] = {}
    after = {"0.005": 1.0, "0.01": 1.0, "+Inf": 10.0, "count": 10.0, "sum": 5.0}
    figures = histogram_figures(after, before)
    assert figures is not None
    assert figures["p50_ms"] is None and figures["mean_ms"] == 500.0


def test_a_labelled_counter_is_read_by_label_value() -> None:
    registry = CollectorRegistry()
    held = Counter("pw_test_held_seconds", "test", ["reason"], registry=registry)
    other = Counter("pw_test_held_seconds_other", "test", ["reason"], registry=registry)
    port = _port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        assert by_label(port, "pw_test_held_seconds_total", "reason") == {}
        held.labels("ingest_backlog").inc(1.5)
        held.labels("ledger_unfetched").inc(0.25)
        other.labels("ingest_backlog").inc(7)  # a metric whose name starts the same: not read
        assert by_label(port, "pw_test_held_seconds_total", "reason") == {
            "ingest_backlog": 1.5,
            "ledger_unfetched": 0.25,
        }
    finally:
        server.shutdown()
        thread.join()


def test_held_seconds_between_two_readings_are_none_after_a_restart() -> None:
    before = {"ingest_backlog": 1.0, "ledger_unfetched": 0.5}
    after = {"ingest_backlog": 3.25, "ledger_unfetched": 0.5}
    assert held_between(before, after) == {"ingest_backlog": 2.25, "ledger_unfetched": 0.0}
    assert held_between({}, {"ingest_backlog": 0.125}) == {
        "ingest_backlog": 0.125,
        "ledger_unfetched": 0.0,
    }
    # the stage process started again: its counters from zero, lower than the first reading
    assert held_between(before, {"ingest_backlog": 0.25, "ledger_unfetched": 0.75}) is None
