"""The ingest service on the real broker: a backlog larger than a partition holds in hand, health."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from partnerwatch.common import http_open
from partnerwatch.local_worker import Namespace, Worker, metric, wait_for
from pipeline.simulation.traffic import generate
from streams.ingest_partition import MAX_PENDING
from tests.integration.state_check import caught_up

pytestmark = pytest.mark.integration


def test_a_backlog_beyond_the_pending_limit_is_sequenced_whole(
    kafka_broker: str, tmp_path: Path
) -> None:
    """One partition, more events waiting than it takes in hand before it pauses fetching: the
    worker starts on all of them at once (its partition pauses while its state loads) and must
    sequence every one, then say so in /v1/health."""
    ns = Namespace(tmp_path, extra_env={"PW_TOPIC_PARTITIONS": "1"})
    count = MAX_PENDING + 2_000
    ns.send(e for e, _ in generate(count, seed=3))
    worker = Worker(ns).start()
    try:
        wait_for(
            lambda: metric(ns.port, "pw_events_accepted_total") >= count,
            300,
            f"{count} events sequenced",
        )
        assert metric(ns.port, "pw_events_accepted_total") == count
        assert caught_up(ns)
        with http_open(f"http://127.0.0.1:{ns.port}/v1/health", timeout=10) as response:
            ingest = orjson.loads(response.read())["ingest"]
        assert (
            ingest["status"] == "running" and ingest["partitions"] == [0] and ingest["batches"] > 0
        )
        assert ingest["error"] == ""
    finally:
        worker.stop()
