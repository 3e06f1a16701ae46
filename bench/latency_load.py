"""The latency bench's load (bench/alert_latency.py): messages sent to the actions topic at a
fixed rate, by librdkafka (`confluent-kafka`, the default) or by the project's producer
(`kafka-python`)."""

from __future__ import annotations

import time
from typing import Any

from pipeline.config import Settings
from sinks.kafka_io import producer

#: The load producers `--latency-load` chooses from (`Paced`).
LOADS = ("confluent-kafka", "kafka-python")


class Paced:
    """The load: messages sent at a fixed rate, each record's timestamp its send time
    (CreateTime), acks from all replicas, idempotent.

    `confluent-kafka` (the default): librdkafka with its default `linger.ms` of 5, what a
    producer on another machine would be. `kafka-python`: the project's producer
    (`linger_ms=1`), the load of the earlier runs; with it the bench spent about 205 µs of CPU
    per event at 3,000 events/s, against about 62 with librdkafka, on the same two cores as the
    worker and the broker (docs/performance.md, "The latency bench's load")."""

    def __init__(self, settings: Settings, topic: str, load: str = LOADS[0]) -> None:
        if load == "kafka-python":
            self.producer: _KafkaPythonLoad | _ConfluentLoad = _KafkaPythonLoad(settings, topic)
        elif load == "confluent-kafka":
            self.producer = _ConfluentLoad(settings, topic)
        else:
            raise ValueError(f"unknown load producer {load!r}: one of {', '.join(LOADS)}")

    def send(
        self, messages: list[tuple[bytes, bytes]], rate: float, sent: list[int] | None = None
    ) -> float:
        """Send `messages` at `rate` per second (`sent[0]`: how many so far) and flush them;
        the rate reached."""
        started = time.monotonic()
        for i, (key, value) in enumerate(messages):
            pause = started + i / rate - time.monotonic()
            if pause > 0.001:  # a sleep per message would cost the bench more than the sending
                time.sleep(pause)
            self.producer.send(key, value)
            if sent is not None:
                sent[0] = i + 1
        self.producer.flush(60)
        return len(messages) / (time.monotonic() - started)

    def close(self) -> None:
        self.producer.close()


class _KafkaPythonLoad:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.producer = producer(settings, linger_ms=1, batch_size=256 * 1024)

    def send(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.topic, key=key, value=value)

    def flush(self, timeout: float) -> None:
        self.producer.flush(timeout=timeout)  # raises KafkaTimeoutError when not done by then

    def close(self) -> None:
        self.producer.close()


class _ConfluentLoad:
    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import Producer

        if settings.kafka_security_protocol != "PLAINTEXT":
            raise SystemExit(
                "the confluent-kafka load speaks PLAINTEXT only: --latency-load kafka-python"
            )
        self.topic = topic
        self.failed: list[str] = []
        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka_broker,
                "client.id": settings.client_id("bench-load"),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )

    def send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                self.producer.poll(0.01)
        self.producer.poll(0)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))

    def flush(self, timeout: float) -> None:
        if left := self.producer.flush(timeout):
            raise RuntimeError(f"{left} load messages not delivered in {timeout:g} s")
        if self.failed:
            raise RuntimeError(f"{len(self.failed)} load messages failed: {self.failed[0]}")

    def close(self) -> None:
        """Nothing to release: librdkafka's producer goes with the object."""
