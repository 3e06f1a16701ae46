"""Prometheus metrics of the worker, exposed at `GET /metrics` on its web server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter("pw_events_accepted_total", "Events sequenced onto the ledger")
EVENTS_DUPLICATE = Counter(
    "pw_events_duplicate_total", "Repeated event_ids dropped inside the dedup window"
)
EVENTS_REJECTED = Counter(
    "pw_events_rejected_total", "Ingest messages sent to the dead-letter topic", ["reason"]
)
ALERTS = Counter(
    "pw_alerts_total", "Alert versions published on the alerts topic", ["detector", "severity"]
)
WAREHOUSE_ROWS = Counter("pw_warehouse_rows_total", "Rows stored in the warehouse", ["table"])
WAREHOUSE_FAILURES = Counter(
    "pw_warehouse_failures_total", "Failed warehouse batch inserts (retried)"
)
WAREHOUSE_BATCH_SECONDS = Gauge(
    "pw_warehouse_last_batch_seconds", "Duration of the last stored batch"
)
WAREHOUSE_SKIPPED = Counter(
    "pw_warehouse_skipped_total",
    "Ledger records the loader did not insert because the warehouse holds them already (redelivered after a restart)",
)
WAREHOUSE_RAW_REFUSED = Counter(
    "pw_warehouse_raw_refused_total",
    "Ledger batches the warehouse refused to take as raw records (one was not plain, or repeated): stored record by record instead",
)
INGEST_CATCH_UP = Counter(
    "pw_ingest_catch_up_total",
    "Source messages the ledger says were sequenced already, past the ingest group's committed"
    " offset (skipped, not redone)",
)
INGEST_FAILURES = Counter(
    "pw_ingest_failures_total",
    "Ingest batches that failed (aborted, the partition reloaded) and failed partition loads",
)
DEDUP_SUSPECTS = Counter(
    "pw_dedup_suspects_total",
    "Event ids the dedup window's Bloom filters may have held, looked up in the warehouse before sequencing",
)
DEDUP_CONFIRMED = Counter(
    "pw_dedup_confirmed_total",
    "Suspected repeats the warehouse held inside the dedup window (dropped as duplicates)",
)
DEDUP_EXACT_IDS = Gauge(
    "pw_dedup_exact_ids",
    "Event ids the worker's ingest partitions hold exactly (the dedup window's recent ids; grows while the warehouse loader lags)",
)
DEDUP_FILTER_IDS = Gauge(
    "pw_dedup_filter_ids",
    "Event ids the worker's ingest partitions hold in the dedup window's Bloom filters",
)
DEDUP_FILTER_FALSE_POSITIVE = Gauge(
    "pw_dedup_filter_false_positive_ratio",
    "The highest expected false-positive rate of a dedup filter of the worker (above ~0.05: raise PW_DEDUP_FILTER_MB)",
)
LEDGER_SNAPSHOTS = Counter(
    "pw_ledger_snapshots_total",
    "Snapshots of an ingest partition's sequencing state written to the ledger snapshot topic",
)
STATE_LOAD_LEDGER_ENTRIES = Counter(
    "pw_ingest_load_ledger_entries_total",
    "Ledger entries read to load ingest partitions' state (after the snapshot, when there is one)",
)
STATE_CHECKPOINTS = Counter(
    "pw_ingest_state_checkpoints_total",
    "Transactions of the ingest service that wrote the detection states and open alerts changed since the previous one (every PW_STATE_CHECKPOINT_SECONDS)",
)
INGEST_TRANSACTION_SECONDS = Histogram(
    "pw_ingest_transaction_seconds",
    "Time from the start of an ingest batch's write to its commit: its transaction (exactly once; at least once: the writes, then the source offset), the round trips to the brokers and the waits for the worker's event loop between them",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 10.0),
)
STATE_LOAD_FOLDED = Counter(
    "pw_ingest_load_folded_entries_total",
    "Ledger entries folded into their accounts' detection states while loading ingest partitions (the entries after the states' last checkpoint)",
)
STATE_REPAIRS = Counter(
    "pw_detect_state_repairs_total",
    "Account detection states found not to match the ledger and rebuilt from it (streams/state_repair.py),"
    " by reason: missing, behind, ahead (of the ledger's head) or gap (before an entry)",
    ["reason"],
)
STATE_REPAIR_INCOMPLETE = Counter(
    "pw_detect_state_repair_incomplete_total",
    "Rebuilt account states whose history neither the ledger nor the warehouse held in full",
)
# -- the provider-wide stage (streams/provider_stage.py) --
PROVIDER_EVENTS = Counter(
    "pw_provider_stage_events_total", "Ledger entries the provider-wide stage folded"
)
PROVIDER_ALERTS = Counter(
    "pw_provider_stage_alerts_total",
    "Alert versions the provider-wide stage published",
    ["detector"],
)
PROVIDER_UNCHECKPOINTED = Gauge(
    "pw_provider_stage_uncheckpointed_entries",
    "Ledger entries the provider-wide stage folded since its last committed checkpoint",
)
PROVIDER_CHECKPOINTS = Counter(
    "pw_provider_stage_checkpoints_total", "State checkpoints the provider-wide stage committed"
)
PROVIDER_RESTORED = Gauge(
    "pw_provider_stage_restored_keys",
    "Provider and account states the stage restored from its snapshot topic when it last took over",
)
PROVIDER_ACTIVE = Gauge(
    "pw_provider_stage_active",
    "1 while this process holds the provider-wide stage (one worker at a time)",
)
SIGMA_RULES = Gauge(
    "pw_sigma_rules",
    "Sigma rules (detection rules and correlations) the provider stage runs from PW_RULES_DIR",
)
SIGMA_RELOAD_FAILURES = Counter(
    "pw_sigma_reload_failures_total",
    "Changes of PW_RULES_DIR the provider stage refused (it keeps the rules it had)",
)
PROVIDER_HELD = Counter(
    "pw_provider_stage_held_seconds_total",
    "Seconds the provider stage's merge held buffered ledger entries back for a partition that"
    " will deliver more, by reason: ingest_backlog (ingest catching up on its actions partition)"
    " or ledger_unfetched (committed ledger records not fetched yet); ingest_backlog when both",
    ["reason"],
)
PROVIDER_EVENT_TIME = Gauge(
    "pw_provider_stage_event_time_seconds",
    "Event time (Unix seconds) of the newest ledger entry the provider stage folded",
)

PROVIDER_PROCESS_RESTARTS = Counter(
    "pw_provider_stage_process_restarts_total",
    "Times the worker started its provider stage process again after it exited (PW_PROVIDER_STAGE=process)",
)
#: What the provider stage itself reports: with PW_PROVIDER_STAGE=process the worker's /metrics
#: shows these as its child process reports them (streams/provider_stage_child.py).
STAGE_METRICS = (
    PROVIDER_EVENTS,
    PROVIDER_ALERTS,
    PROVIDER_UNCHECKPOINTED,
    PROVIDER_CHECKPOINTS,
    PROVIDER_RESTORED,
    PROVIDER_ACTIVE,
    SIGMA_RULES,
    SIGMA_RELOAD_FAILURES,
    PROVIDER_EVENT_TIME,
    PROVIDER_HELD,
)

# -- observability (issue 7): labels are small closed sets, never an IP, principal or account id --
#: Detector timing is sampled so the hot path pays for it on one event in this many.
DETECTOR_SAMPLE_EVERY = 64
EVENTS_CONSUMED = Counter(
    "pw_events_consumed_total",
    "Ingest messages handled (accepted, duplicate or dead-lettered), redeliveries excluded",
)
DETECTOR_SECONDS = Histogram(
    "pw_detector_evaluation_seconds",
    f"Time one detector takes on one ledger event; sampled (1 event in {DETECTOR_SAMPLE_EVERY})",
    ["detector"],
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
ALERT_LATENCY = Histogram(
    "pw_alert_latency_seconds",
    "Kafka timestamp of the pw.actions record that triggered an alert to the alert's publication",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WAREHOUSE_BATCH_ROWS = Histogram(
    "pw_warehouse_batch_rows",
    "Rows (events and alerts) per stored warehouse batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000),
)
WAREHOUSE_INSERT_SECONDS = Histogram(
    "pw_warehouse_insert_seconds",
    "Duration of one warehouse insert, per table (successful attempts)",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge(
    "pw_consumer_lag_messages",
    "Offsets between a partition's end (last stable offset) and the worker group's committed offset",
    ["topic", "partition"],
)
WAREHOUSE_LAG = Gauge(
    "pw_warehouse_lag_messages",
    "Offsets between a partition's end (last stable offset) and the warehouse loader group's committed offset",
    ["topic", "partition"],
)

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
HTTP_AUTH_FAILURES = Counter(
    "pw_http_auth_failures_total",
    "Requests to the worker's web server refused before their view ran, by route pattern and reason: missing, "
    "malformed, wrong, bad_signature, stale, replay, disabled (credential refused), throttled (429: too many "
    "failures from the client's address), bad_host (421: Host not allowed)",
    ["route", "reason"],
)
SQL_RUNNING = Gauge(
    "pw_sql_running",
    "User queries (POST /v1/sql) running in this worker now; at most PW_SQL_MAX_CONCURRENT",
)
SQL_REFUSED_BUSY = Counter(
    "pw_sql_refused_busy_total",
    "User queries (POST /v1/sql) answered 429 because PW_SQL_MAX_CONCURRENT were already running",
)
BEHAVIOUR_MODEL_LOADED = Gauge(
    "pw_behaviour_model_loaded",
    "1 when a behaviour model is loaded; 0: behaviour_anomaly is idle (cold start)",
)
BEHAVIOUR_MODEL_LOADS = Counter(
    "pw_behaviour_model_loads_total", "Behaviour model artifacts swapped in by the worker"
)
BEHAVIOUR_MODEL_REFUSED = Counter(
    "pw_behaviour_model_refused_total",
    "Behaviour model artifacts refused (feature version, hash, types)",
)

# -- memory (every long-running process: streams/trim_thread.py) --
WAREHOUSE_MEMORY_RELEASES = Counter(
    "pw_warehouse_memory_releases_total",
    "Times the embedded warehouse handed the memory its engine freed back to the system after an insert batch (PW_WAREHOUSE_RELEASE_ABOVE_MIB)",
)
HEAP_TRIMS = Counter(
    "pw_heap_trims_total",
    "Times this process handed its freed heap memory back to the system (glibc malloc_trim)",
)

# -- alert feed (`partnerwatch alerts feed`, its own /metrics port); output = a name from the routes file --
ALERT_DELIVERIES = Counter(
    "pw_alert_deliveries",
    "Alert deliveries by output and result: delivered, retried (one failed attempt, retried) or parked (budget spent)",
    ["output", "result"],
)
ALERT_DELIVERY_SECONDS = Histogram(
    "pw_alert_delivery_seconds",
    "Time from the first attempt to a successful delivery, retries and backoff included",
    ["output"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

LOADER_PROCESS_RESTARTS = Counter(
    "pw_loader_process_restarts_total",
    "Times the worker started its warehouse loader process again after it exited (PW_WAREHOUSE_LOADER=process)",
)
#: What the warehouse loader itself reports: with PW_WAREHOUSE_LOADER=process the worker's /metrics
#: shows these as its child process reports them (streams/loader_child.py).
LOADER_METRICS = (
    WAREHOUSE_ROWS,
    WAREHOUSE_FAILURES,
    WAREHOUSE_BATCH_SECONDS,
    WAREHOUSE_SKIPPED,
    WAREHOUSE_RAW_REFUSED,
    WAREHOUSE_BATCH_ROWS,
    WAREHOUSE_INSERT_SECONDS,
    WAREHOUSE_MEMORY_RELEASES,
)
