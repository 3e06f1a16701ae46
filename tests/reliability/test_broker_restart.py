"""The Kafka broker stopped and restarted mid-stream (a private broker: never the shared one).

6,000 events: 3,000 produced, the broker stopped while the worker is sequencing and loading them,
down for 20 s, started again; then 300 of them redelivered and 3,000 more. End: exactly 6,000
events stored once, every chain verifies, every alert once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.reliability.harness import assert_exact, private_broker, stored

# integration: it stops and starts a broker of its own (tests/reliability/harness.py
# `private_broker`), never the shared one; make test runs it with the broker's tests
pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def test_broker_stopped_and_restarted_mid_stream(tmp_path: Path) -> None:
    stream = [e for e, _ in generate(6_000, seed=61, attack_rate=0.004)]
    with private_broker(tmp_path / "kafka") as broker:
        ns = Namespace(tmp_path, extra_env={"PW_KAFKA_BROKER": broker.address})
        worker = Worker(ns).start()
        try:
            ns.send(stream[:3_000])
            wait_for(lambda: stored(ns) >= 300, 120, "300 stored events")
            at_stop = stored(ns)
            broker.stop()
            time.sleep(20)
            assert worker.alive(), worker.log_tail()
            broker.start()
            ns.send(stream[:300])  # a gateway's redelivery after the outage
            ns.send(stream[3_000:])
            wait_for(lambda: stored(ns) >= 6_000, 300, "6,000 stored events")
            figures = assert_exact(ns, 6_000, stream)
            assert worker.alive()
            print(f"broker restart: stored at stop {at_stop}, end {figures}")
        finally:
            worker.stop()
