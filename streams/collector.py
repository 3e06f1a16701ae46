"""The garbage collector's settings of the long-running processes: the worker (its ingest service,
streams/ingest.py), `partnerwatch provider-stage` and `partnerwatch loader`. Each sets
`GC_THRESHOLD` and freezes the heap it has built by the time its work starts (`gc.freeze`: the
modules, the loaded state, the embedded engine's objects are then never walked again)."""

from __future__ import annotations

import gc
from typing import Final

#: Garbage collector thresholds once the state is loaded (Python's defaults: 700, 10, 10).
#: The youngest generation every 10,000 allocations (measured in-process on the benchmark's mix,
#: bench/stages.py, median of 3: 97.2 µs per event with the defaults, 92.5 with 10,000 and 20).
#: The middle one only every 1,000 of those: on a backlog it held the records fetched ahead and
#: the batch being worked on, and each collection walked them again (bench/gc_cost.py;
#: docs/performance.md, "The collector's middle generation"). A full collection after 10 middle
#: ones, and only when a quarter of the long-lived heap is new since the last. Garbage in
#: reference cycles that outlived a young collection waits that long to be freed: tried in
#: session 19 and withdrawn, because aiokafka's records fetched and then dropped unread (a paused
#: partition) were such garbage, each with its fetch's bytes, and the provider stage process
#: grew by about 190 MiB over 1,500,000 events; since `faust_internals.release_dropped_fetches`
#: they are freed when dropped. The warehouse loader process ran with Python's defaults until
#: session 37: each fetched ledger record is an object the collector tracks, 20,000 held per
#: batch; with these thresholds and its heap frozen once the warehouse is open, its loader thread
#: took about 1 µs less per row (bench/loader_cpu.py; docs/performance.md, "Compact parts for
#: the loader's inserts").
GC_THRESHOLD: Final = (10_000, 1_000, 10)


def settle() -> None:
    """What a process does once the heap it works with is built: freeze it out of every collection
    (it lives as long as the process) and collect at `GC_THRESHOLD` from then on."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
