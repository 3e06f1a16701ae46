-- audit.events writes a part holding less than 32 MiB of uncompressed data compact (every column
-- in one file) instead of wide (two files per column and per skip index). The loader's batches of
-- 20,000 events (about 17 MiB on the benchmark's mix) were over ClickHouse's default of 10 MiB:
-- each insert created 104 files on the warehouse's filesystem, to be deleted again at its first
-- merge; a compact part is 14. Merges of the small parts give wide parts past the threshold, merged
-- column by column (0009). With 128 MiB (merges of compact parts, done horizontally, up to about
-- 150,000 events) the CPU was about the same and the peak memory of loading 1,000,000 events
-- about 80 MiB higher. Measured in docs/performance.md ("Compact parts for the loader's inserts").
ALTER TABLE audit.events MODIFY SETTING min_bytes_for_wide_part = 33554432
