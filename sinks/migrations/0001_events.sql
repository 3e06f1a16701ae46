-- audit.events: one row per accepted event, as sequenced on pw.ledger.
-- ORDER BY the forensic keys (account, then time); monthly partitions; evidence kept for
-- PW_RETENTION_DAYS (default 730). ReplacingMergeTree collapses a redelivered event (same account,
-- time and id) on merge; the loader also skips ids already stored, so plain counts are exact.
-- `payload` is the canonical event JSON the hash chain covers (`partnerwatch verify-chain`).
CREATE TABLE IF NOT EXISTS audit.events
(
    event_id        String,
    account_id      LowCardinality(String),
    seq             UInt64 CODEC(Delta, ZSTD(1)),
    occurred_at     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    ingested_at     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    action          LowCardinality(String),
    marketplace     LowCardinality(String),
    actor_type      LowCardinality(String),
    provider_id     LowCardinality(String),
    principal_id    String,
    source_ip       String,
    user_agent      String CODEC(ZSTD(3)),
    session_id      String,
    operation       LowCardinality(String),
    resource_type   LowCardinality(String),
    resource_id     String,
    outcome         LowCardinality(String),
    approval_id     String,
    amount_value    String,
    amount_currency LowCardinality(String),
    changes         String CODEC(ZSTD(3)),
    prev_hash       FixedString(64),
    hash            FixedString(64),
    payload         String CODEC(ZSTD(3)),
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 4,
    INDEX idx_source_ip source_ip TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_resource_id resource_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_principal principal_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (account_id, occurred_at, event_id)
TTL toDateTime(occurred_at) + INTERVAL ${PW_RETENTION_DAYS} DAY
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;
