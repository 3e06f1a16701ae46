-- audit.alerts: the latest version of each alert. An alert keeps its deterministic alert_id as it
-- gathers evidence; ReplacingMergeTree(count) keeps the version with the most evidence, so read
-- with FINAL (or argMax) for one row per alert.
CREATE TABLE IF NOT EXISTS audit.alerts
(
    alert_id           String,
    detector           LowCardinality(String),
    severity           LowCardinality(String),
    account_id         LowCardinality(String),
    provider_id        LowCardinality(String),
    principal_id       String,
    title              String,
    summary            String CODEC(ZSTD(3)),
    evidence_event_ids Array(String),
    first_seen         DateTime64(3, 'UTC'),
    last_seen          DateTime64(3, 'UTC'),
    count              UInt32,
    response           Array(String) CODEC(ZSTD(3)),
    stored_at          DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(count)
PARTITION BY toYYYYMM(first_seen)
ORDER BY (account_id, detector, alert_id)
TTL toDateTime(first_seen) + INTERVAL ${PW_RETENTION_DAYS} DAY
SETTINGS ttl_only_drop_parts = 1;
