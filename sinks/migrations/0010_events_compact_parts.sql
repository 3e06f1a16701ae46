-- audit.events keeps its smaller parts compact (every column in one file) until they hold 128 MiB
-- of uncompressed data (about 150,000 events of the benchmark's mix). A wide part writes two files
-- per column and per skip index: 104 files for each 20,000-row batch the loader inserts, and as
-- many again for every merge of small parts, each file created, written and later deleted on the
-- warehouse's filesystem; a compact part is 14. ClickHouse's default (10 MiB) made every insert
-- of the loader's batches (about 17 MiB) wide. Parts merged past the threshold are wide, merged
-- column by column (0009); the small parts' merges are horizontal, over one file per part.
-- Measured in docs/performance.md ("Compact parts for the loader's inserts").
ALTER TABLE audit.events MODIFY SETTING min_bytes_for_wide_part = 134217728
