-- audit.events merges column by column (ClickHouse's vertical merge), whatever the parts' size.
-- A horizontal merge reads every column of every part at once, with a read buffer for each; its
-- memory grows with the columns (28) times the parts merged. ClickHouse merges vertically only
-- when the parts merged hold 131,072 rows or more together; the loader inserts 20,000-row parts,
-- so the merges of the newest parts were horizontal, and in the embedded warehouse (the worker's
-- own process) the loading peaks set the worker's peak RSS. Loading 1,000,000
-- ledger records into a fresh embedded warehouse in 20,000-row batches, the peak rose 441 MiB above
-- the start with vertical merges against 505-514 without, at the same CPU (docs/performance.md,
-- "Where the worker's memory goes").
ALTER TABLE audit.events MODIFY SETTING
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1
