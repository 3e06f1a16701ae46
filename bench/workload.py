"""The benchmark's workload: the realistic event mix and how it is produced to a namespace.

Shared by bench/run.py, bench/alert_latency.py and bench/profile.py.
"""

from __future__ import annotations

import time

import orjson

from partnerwatch.local_worker import Namespace
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.kafka_io import action_key, ensure_topics, producer

RESULTS = REPO_ROOT / "bench" / "results"
#: More accounts than the demo's six, so the account-keyed partitions share the load.
ACCOUNTS, PROVIDERS = 48, 12
#: Worker settings for every namespace of the run (`--env PW_COMMIT_INTERVAL=0.1`).
WORKER_ENV: dict[str, str] = {"PW_LOG_LEVEL": "warning"}


def stream(count: int, seed: int = 99) -> list[tuple[bytes, bytes]]:
    """The realistic mix as (key, value) messages: benign traffic with every attack kind."""
    return [
        (action_key(event), orjson.dumps(event))
        for event, _ in generate(
            count,
            seed=seed,
            accounts=ACCOUNTS,
            providers=PROVIDERS,
            attack_rate=0.001,
            attack_kinds=ATTACKS,
        )
    ]


def produce(ns: Namespace, messages: list[tuple[bytes, bytes]]) -> float:
    """Produce every message to the namespace's actions topic; return the seconds it took."""
    ensure_topics(ns.settings)
    prod = producer(ns.settings, linger_ms=20, batch_size=256 * 1024)
    started = time.monotonic()
    topic = ns.settings.actions_topic
    for key, value in messages:
        prod.send(topic, key=key, value=value)
    prod.flush()
    prod.close()
    return time.monotonic() - started
