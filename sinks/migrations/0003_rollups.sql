-- audit.activity_1m: per-minute activity rollup for dashboards (Grafana panels read it with
-- countMerge/uniqMerge), one row per (account, minute, provider, action, outcome) after merges.
-- Fed by the materialized view audit.activity_1m_mv on every insert into audit.events; exact
-- because the loader never inserts an event twice (sinks/audit_store.py skips stored ids).
-- source_ips counts only events that carry an IP. Same retention as audit.events.
CREATE TABLE IF NOT EXISTS audit.activity_1m
(
    minute      DateTime('UTC'),
    account_id  LowCardinality(String),
    provider_id LowCardinality(String),
    action      LowCardinality(String),
    outcome     LowCardinality(String),
    events      AggregateFunction(count),
    principals  AggregateFunction(uniq, String),
    source_ips  AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (account_id, minute, provider_id, action, outcome)
TTL minute + INTERVAL ${PW_RETENTION_DAYS} DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit.activity_1m_mv TO audit.activity_1m AS
SELECT
    toStartOfMinute(toDateTime(occurred_at, 'UTC')) AS minute,
    account_id,
    provider_id,
    action,
    outcome,
    countState() AS events,
    uniqState(principal_id) AS principals,
    uniqIfState(source_ip, source_ip != '') AS source_ips
FROM audit.events
GROUP BY minute, account_id, provider_id, action, outcome;

-- Events stored before this migration: rolled up once, here. Migrations run before the loader
-- starts (worker start, `partnerwatch migrate`), so no insert races this backfill; on a server
-- with workers already running, stop them while migrating.
INSERT INTO audit.activity_1m
SELECT
    toStartOfMinute(toDateTime(occurred_at, 'UTC')) AS minute,
    account_id,
    provider_id,
    action,
    outcome,
    countState() AS events,
    uniqState(principal_id) AS principals,
    uniqIfState(source_ip, source_ip != '') AS source_ips
FROM audit.events
GROUP BY minute, account_id, provider_id, action, outcome
