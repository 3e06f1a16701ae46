"""Sequencing's instruction count per event (dedup and chain), for callgrind: repeatable on a
shared machine.

`--count` synthetic ids (500 accounts, a small event each, as `bench.dedup_memory` sends them),
`--rate` per second of ingest time, in batches of 5,000, through one partition's `LedgerState`:
before each batch what the ingest service does before sequencing (`DedupWindow.prepare`, which
compacts the exact tier, looks the batch's ids up in it and in the filters, and hands back their
digests; then `confirm` with what the warehouse holds of the suspects: nothing, as no repeat is
sent), then `sequence` for each event with its digest; in bounded mode (`--bounded`: the default
`PW_DEDUP_EXACT_SECONDS` and `PW_DEDUP_FILTER_MB`) the batch is committed and the warehouse holds
everything up to the previous batch (`seal`). The batches run inside `functools.reduce`, so that
callgrind collects them only:

    valgrind --tool=callgrind --toggle-collect=functools_reduce \\
        python -m bench.dedup_callgrind [--count 300000] [--rate 1500] [--bounded]

"Collected" in valgrind's summary, divided by `--count`, is the instructions per event. The
script prints the ids held exactly and in filters, the filters' suspects, and a digest of the
chain heads (to compare two trees) and where its modules came from: it runs against any tree's
modules (`PYTHONPATH`, running this file by its path from that tree) whose `prepare` returns the
digests with the suspects (365f4ba on). The 2026-12-03 comparison with a tree from before
`prepare` (bench/results/2026-12-03-dedup-callgrind.md) ran the script as of a1857ac, which called
`cold_suspects` there.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from typing import Any

import orjson

T0 = 1_796_000_000_000
BATCH = 5_000

#: One batch: its first offset, its (account_id, event_id) pairs, its events, each event's
#: ingest time, and the batch's (its first event's).
Batch = tuple[int, list[tuple[str, str]], list[dict[str, Any]], list[str], str]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=1_500)
    parser.add_argument("--bounded", action="store_true")
    args = parser.parse_args()
    from pipeline.config import Settings
    from pipeline.event import format_ms
    from pipeline.ledger import LedgerState

    s = Settings.from_env({})
    exact_seconds = s.dedup_exact_seconds if args.bounded else 0
    filter_mb = s.dedup_filter_mb if args.bounded else 0
    state = LedgerState(s.dedup_window_days, exact_seconds, filter_mb)
    batches: list[Batch] = []
    for start in range(0, args.count, BATCH):
        ids = [
            (f"A{i % 500:04d}", f"ev-{i:012d}")
            for i in range(start, min(args.count, start + BATCH))
        ]
        events = [{"account_id": a, "event_id": e, "x": 1} for a, e in ids]
        times = [format_ms(T0 + (start + n) * 1000 // args.rate) for n in range(len(ids))]
        batches.append((start, ids, events, times, times[0]))
    suspected: list[int] = []

    def step(done: int, batch: Batch) -> int:
        start, ids, events, times, now = batch
        digests, suspects = state.prepare(ids, now)
        # no repeats are sent: a filter's "maybe" is a false positive, the warehouse holds none
        state.confirm(())
        for n, event in enumerate(events):
            state.sequence(event, times[n], start + n, digests[n])
        suspected.append(len(suspects))
        state.committed(start + len(ids))
        if args.bounded:
            state.seal(start)
        return done + len(ids)

    done = functools.reduce(step, batches, 0)
    heads = {k: v.to_json() for k, v in sorted(state.heads.items())}
    import pipeline.ledger

    print(
        f"{pipeline.ledger.__file__}: {done} events,"
        f" {'bounded' if args.bounded else 'exact'}; held exactly"
        f" {state.seen_count()}, in filters {state.filter_count()}; filter suspects"
        f" {sum(suspected)}; heads"
        f" {hashlib.sha256(orjson.dumps(heads)).hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main()
