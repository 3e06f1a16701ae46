"""The Faust application, configured from `Settings` (PW_* environment variables)."""

from __future__ import annotations

import gc
import sys
from typing import Any

import faust
from faust.sensors import Monitor

from pipeline.config import Settings
from sinks.kafka_io import faust_options
from streams.faust_internals import (
    release_dropped_fetches,
    send_produce_requests_without_copies,
    start_tables_without_pause,
)
from streams.web.guard import WebGuard, exposure_error


class Worker(faust.Worker):
    """Faust's worker, leaving logging to `pipeline.logs.configure_logging` (called by the
    command line before the worker starts).

    - `override_logging=False`: Faust does not replace the root logger's handlers with its own
      formatter, nor attach its terminal spinner (which set the root logger to DEBUG at WARN and
      above, so every debug call in aiokafka and Faust built a LogRecord: 7% of the worker's time).
    - `redirect_stdouts=False`: Faust's `worker` command asks for stdout to be logged as WARNING;
      structlog's lines were caught that way, logged a second time, with a second timestamp.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["override_logging"] = False
        kwargs["redirect_stdouts"] = False
        super().__init__(*args, **kwargs)
        self.spinner = None


class LeanMonitor(Monitor):
    """Faust's monitor without its per-message and per-table-access bookkeeping.

    Faust calls these hooks for every message and every table access; the pipeline's own
    figures are Prometheus metrics (sinks/metrics.py), so the monitor's counters, timers and
    per-message attributes were pure cost on the hot path. Assignment, rebalance and commit
    hooks (rare) keep Faust's behaviour.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_table_del(self, table: Any, key: Any) -> None:
        pass

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass


settings = Settings.from_env()
if exposure_error(settings):  # beyond loopback without a token: refuse before anything listens
    print(f"configuration error: {exposure_error(settings)}", file=sys.stderr)
    raise SystemExit(2)
(settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
#: who may call which route (streams/web/guard.py): in front of every request
web_guard = WebGuard(settings)

app = faust.App(
    settings.app_id,
    # The broker, its security settings and the client options shared with every other client
    # (sinks/kafka_io.py): session timeout, heartbeat, request and fetch sizes, acks.
    **faust_options(settings),
    store="memory://",
    # Faust's own agents only count alerts and dead letters (streams/monitor.py); the exactly-once
    # work, PW_PROCESSING_GUARANTEE, is the ingest service's (streams/ingest.py).
    processing_guarantee="at_least_once",
    topic_partitions=settings.topic_partitions,
    # the topics Faust creates itself (its leader topic); ensure_topics creates the others
    topic_replication_factor=settings.topic_replication,
    datadir=str(settings.data_dir / "faust"),
    broker_commit_interval=settings.commit_interval,
    stream_buffer_maxsize=1024,
    stream_wait_empty=False,
    producer_linger=0.005,
    web_bind=settings.web_host,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    # Only PartnerWatch's own routes: Faust's built-in pages (/router, /table/<name>/<key>, the
    # statistics, graph and performance pages) served table contents (grants, principals, IP
    # allowlists) to anyone. Off here, and the guard's route list refuses them in any case.
    web_router_enabled=False,
    web_tables_enabled=False,
    web_stats_enabled=False,
    web_graph_enabled=False,
    web_metrics_enabled=False,
    web_application_options={"middlewares": [web_guard.middleware]},
    autodiscover=False,
    origin="streams",
    Worker=Worker,
    Monitor=LeanMonitor,
)
start_tables_without_pause(app)  # no Faust tables: skip the TableManager's one-second start pause
# the ingest service's record batches (1 MiB each) go to the socket as they are, not copied
send_produce_requests_without_copies()
# every consumer of the worker (Faust's too) frees records it fetched and then dropped unread
release_dropped_fetches()


@app.task
async def _freeze_startup_heap() -> None:
    """Move everything allocated before the worker started (Faust, scikit-learn, chDB, the
    GeoIP table: objects that live as long as the process) out of the garbage collector's view.
    Full collections walked all of them: measured, they paused the event loop for 150-220 ms,
    felt as alert latency; with the start-up heap frozen, 60-80 ms."""
    gc.freeze()
