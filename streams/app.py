"""The Faust application, configured from `Settings` (PW_* environment variables)."""

from __future__ import annotations

from typing import Any

import faust

from pipeline.config import Settings


class Worker(faust.Worker):
    """Faust's worker without its terminal spinner.

    At log levels WARN and above Faust attaches a spinner handler and sets the root logger to
    DEBUG, so every debug call in aiokafka and Faust builds a LogRecord per message (measured:
    7% of the worker's time at `PW_LOG_LEVEL=warning`).
    """

    def _setup_spinner_handler(self, logger: Any, level: int) -> None:
        self.spinner = None


settings = Settings.from_env()
(settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)

app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.kafka_broker.replace(',', ';kafka://')}",
    store="memory://",
    processing_guarantee=settings.processing_guarantee,
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=1,
    datadir=str(settings.data_dir / "faust"),
    broker_commit_interval=settings.commit_interval,
    consumer_auto_offset_reset="earliest",
    # A killed worker's group membership expires fast, so a restarted worker resumes in seconds.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=2.0,
    stream_buffer_maxsize=1024,
    stream_wait_empty=False,
    producer_linger=0.005,
    producer_max_request_size=4 * 1024 * 1024,
    consumer_max_fetch_size=4 * 1024 * 1024,
    web_bind=settings.web_host,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    autodiscover=False,
    origin="streams",
    Worker=Worker,
)
