"""Instructions per event of the ingest service's in-process stages, for callgrind: repeatable
on a shared machine whose speed drifts by a fifth within an hour.

The same stages as `bench.ingest_stages` (validate, mask, sequence and hash, detect, encode: the
functions `Ingest.batch` calls), over the benchmark's mix (bench/workload.py `stream`), in
batches of `--batch`: `--warm` events first (caches and state fill as in a worker that has run a
while), then `--count` events inside `functools.reduce`, so that callgrind collects those only:

    valgrind --tool=callgrind --toggle-collect=functools_reduce \\
        python -m bench.stages_callgrind [--warm 20000] [--count 10000] [--batch 500]

"Collected" in valgrind's summary, divided by `--count`, is the instructions per event;
`callgrind_annotate --inclusive=yes` ranks the functions, compiled ones by their mypyc names
(`CPyDef_<module>___<function>`). Instructions are not time: under valgrind OpenSSL finds no
SHA extensions, so hashing counts several times what it costs natively, and a compiler flag may
save cycles without saving instructions. Use it to compare two builds or two trees of the same
code path, not as a rate. The script prints the records and alert versions it made, to check
that the two runs did the same work.

`--timed` (natively, not under valgrind) sets the worker's collector (frozen heap, its
thresholds) after the warm-up and prints the collected events' CPU per event and the interpreter:
with `farm-bench` (paired A/B of the whole command) it compares two interpreters or builds.

`--whole` runs the batches through `Ingest.batch` itself (streams/ingest_batch.py: its own loops
over the records and events included, as the ingest service runs them) instead of the stages
one by one; the stages' own figures (`bench.ingest_stages`) leave those loops out.
"""

from __future__ import annotations

import argparse
import functools
import gc
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=20_000, help="events before the collected ones")
    parser.add_argument("--count", type=int, default=10_000, help="events collected")
    parser.add_argument("--batch", type=int, default=500, help="source messages per batch")
    parser.add_argument(
        "--whole", action="store_true", help="through Ingest.batch, loops and all (see above)"
    )
    parser.add_argument(
        "--timed",
        action="store_true",
        help="natively: the worker's collector settings after the warm-up, CPU per event printed",
    )
    args = parser.parse_args()
    from bench.ingest_stages import Stages
    from bench.workload import interpreter, stream
    from pipeline.config import Settings
    from streams.collector import settle

    messages = stream(args.warm + args.count)
    core = Stages(Settings.from_env({}))

    def whole(made: tuple[int, int], start: int) -> tuple[int, int]:
        chunk = messages[start : start + args.batch]
        records = [
            ConsumerRecord(key, value, offset) for offset, (key, value) in enumerate(chunk, start)
        ]
        out = core.ingest.batch(core.state, records, confirm=lambda pairs, since_ms: ())
        return made[0] + len(out.ledger), made[1] + len(out.alerts)

    def one(made: tuple[int, int], start: int) -> tuple[int, int]:
        chunk = messages[start : start + args.batch]
        validated = core.stage_validate(chunk, range(start, start + len(chunk)))
        entries = core.stage_sequence(core.stage_mask(validated))
        alerts = core.stage_detect(entries)
        return made[0] + core.stage_encode(entries), made[1] + len(alerts)

    step = whole if args.whole else one
    made = (0, 0)
    for start in range(0, args.warm, args.batch):  # not inside functools.reduce: not collected
        made = step(made, start)
    if args.timed:  # as the worker once its state is loaded (streams/ingest.py `loaded`)
        gc.collect()
        settle()
    started = time.process_time()
    collected = functools.reduce(step, range(args.warm, args.warm + args.count, args.batch), (0, 0))
    cpu = time.process_time() - started
    print(f"collected {args.count} events: {collected[0]} records, {collected[1]} alert versions")
    if args.timed:
        print(f"CPU {cpu / args.count * 1e6:.2f} µs per event ({interpreter()})")


class ConsumerRecord:
    """What `Ingest.batch` reads of a consumed record (streams/ingest_batch.py `SourceRecord`)."""

    __slots__ = ("key", "offset", "timestamp", "value")

    def __init__(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        self.key, self.value, self.offset, self.timestamp = key, value, offset, 0


if __name__ == "__main__":
    main()
