"""Prometheus metrics of the worker, exposed at `GET /metrics` on its web server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_ACCEPTED = Counter("pw_events_accepted_total", "Events sequenced onto the ledger")
EVENTS_DUPLICATE = Counter("pw_events_duplicate_total", "Repeated event_ids dropped inside the dedup window")
EVENTS_REJECTED = Counter("pw_events_rejected_total", "Ingest messages sent to the dead-letter topic", ["reason"])
ALERTS = Counter("pw_alerts_total", "Alert versions published on the alerts topic", ["detector", "severity"])
WAREHOUSE_ROWS = Counter("pw_warehouse_rows_total", "Rows stored in the warehouse", ["table"])
WAREHOUSE_FAILURES = Counter("pw_warehouse_failures_total", "Failed warehouse batch inserts (retried)")
WAREHOUSE_BATCH_SECONDS = Gauge("pw_warehouse_last_batch_seconds", "Duration of the last stored batch")
INGEST_CATCH_UP = Counter("pw_ingest_catch_up_total", "Source messages the stream skipped and ingest read back itself")

HTTP_INGEST_EVENTS = Counter(
    "pw_http_ingest_events_total",
    "Events received by POST /v1/events, by verdict (accepted: produced to actions; rejected: dead-lettered)",
    ["outcome"],
)
HTTP_INGEST_REFUSED = Counter(
    "pw_http_ingest_refused_total",
    "Requests to POST /v1/events refused whole, nothing written, by HTTP status (401, 413, 415, 429)",
    ["status"],
)
