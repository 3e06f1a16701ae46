-- audit.loader_offsets: the warehouse loader's high-water marks, one row per ledger partition and
-- batch (streams/warehouse_loader.py). Before a batch is inserted the loader writes, for each
-- partition in it, `start` (every ledger record of the partition below this offset is stored,
-- dead-lettered or skipped) and `end` (one past the batch's last offset: nothing from here on is
-- stored). After a crash, records below `start` are skipped without a query, records in
-- [start, end) are checked against audit.events by (account_id, seq) (the batch may be partly
-- stored), and records from `end` on are inserted directly. The row with the largest `end` is the
-- one in force (`argMax(start, end)`, no FINAL needed); merges keep only it.
CREATE TABLE IF NOT EXISTS audit.loader_offsets
(
    topic      String,
    partition  UInt32,
    start      UInt64,
    end        UInt64,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(end)
ORDER BY (topic, partition)
