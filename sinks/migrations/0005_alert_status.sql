-- audit.alert_status: the lifecycle of an alert, one row per action (append-only, never updated),
-- written by `partnerwatch alerts ack|resolve` and POST /v1/alerts/{alert_id}/ack|resolve.
-- status is 'acknowledged', 'resolved' or 'reopened'; who (actor) did it, why (note) and when
-- (at). The current status of an alert is argMax(status, at) over its rows; an alert with no row
-- (or whose latest row is 'reopened') is open.
CREATE TABLE IF NOT EXISTS audit.alert_status
(
    alert_id   String,
    account_id LowCardinality(String),
    status     LowCardinality(String),
    actor      String,
    note       String CODEC(ZSTD(3)),
    at         DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (alert_id, at)
TTL toDateTime(at) + INTERVAL ${PW_RETENTION_DAYS} DAY
SETTINGS ttl_only_drop_parts = 1;
