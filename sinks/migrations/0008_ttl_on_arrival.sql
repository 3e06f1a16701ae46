-- Retention counts from when PartnerWatch received a row, never from a time a provider claims.
-- Until this migration audit.events expired rows by `occurred_at` (the provider's clock) and
-- audit.alerts by `first_seen` (the evidence's occurred_at): an event claiming 1971, or a year past
-- 2106 (where toDateTime wraps), was accepted and sequenced, then dropped by the TTL as soon as its
-- part was written, and so was any alert on it. The evidence vanished from forensics while the
-- ledger kept it. `ingested_at` is the worker's clock when the ledger sequenced the event;
-- `stored_at` is the warehouse's clock when the alert version was written.
ALTER TABLE audit.events MODIFY TTL toDateTime(ingested_at) + INTERVAL ${PW_RETENTION_DAYS} DAY;
ALTER TABLE audit.alerts MODIFY TTL toDateTime(stored_at) + INTERVAL ${PW_RETENTION_DAYS} DAY
