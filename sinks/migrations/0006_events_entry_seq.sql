-- audit.events keyed by ledger entry, not by event: a late repeat of an event_id (after the
-- dedup window, PW_DEDUP_WINDOW_DAYS) is a new ledger entry with its own seq, so it is stored as
-- a row of its own. Before this migration the sorting key (account_id, occurred_at, event_id)
-- made ReplacingMergeTree collapse it into the first row on merge: a seq gap. ClickHouse only
-- lets a sorting key grow by columns added in the same ALTER, so `entry_seq` (= seq; 0 in rows
-- stored before this migration, which held one row per event_id) joins the key. A redelivered
-- entry (same seq) still collapses.
ALTER TABLE audit.events
    ADD COLUMN IF NOT EXISTS entry_seq UInt64,
    MODIFY ORDER BY (account_id, occurred_at, event_id, entry_seq)
