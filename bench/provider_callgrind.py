"""The provider-wide stage's instruction count per event (`Stage.observe`), for callgrind:
repeatable on a shared machine, like bench/detect_callgrind.py for the account rules.

The events are `bench.provider_stage_costs`'s (the ledger the ingest service writes for the
benchmark's mix, over `--partitions` partitions, in the stage's merge order, parsed beforehand).
One pass through a `Stage` warms the caches a long run has warm (geo lookups, parsed addresses,
compiled allowlists); then the event-time caches are emptied (each event's time is new in a real
run) and the events go through a new `Stage` again, from empty state, inside `functools.reduce`,
so that callgrind collects that pass only:

    valgrind --tool=callgrind --toggle-collect=functools_reduce \\
        python -m bench.provider_callgrind [--count 5000] [--pure-detectors] [--parse]

`--parse` collects each ledger record's parse too, as the stage folds it
(streams/provider_stage.py `_merge`: `pipeline.ledger.entry_event(record)`; in a tree from before
it, `strip_entry(orjson.loads(record))`): what the parse costs, and what the dict it makes costs
every rule that looks into the event.

"Collected" in valgrind's summary, divided by `--count`, is the instructions per event. The
script prints digests of the alert versions and of the final state (to compare two trees).
"""

from __future__ import annotations

import argparse
import functools
import hashlib

import orjson


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--pure-detectors", action="store_true")
    parser.add_argument("--parse", action="store_true", help="collect the records' parse too")
    args = parser.parse_args()
    if args.pure_detectors:
        from tools.compile_detectors import pure_python

        pure_python()  # before anything imports detectors
    from bench.provider_stage_costs import ledger, merged
    from detectors import windows
    from detectors.provider_wide.run import Stage
    from pipeline import ledger as ledger_module
    from pipeline.alert import Alert
    from pipeline.config import Settings
    from pipeline.event import Event
    from pipeline.ledger import event_of

    records = merged(ledger(args.count, args.partitions))
    events = [event_of(orjson.loads(v)) for v in records]
    config = Settings.from_env({}).detect

    Run = tuple[Stage, list[Alert]]

    def step(run: Run, event: Event) -> Run:
        stage, out = run
        out.extend(stage.observe(event))
        return run

    parse = getattr(ledger_module, "entry_event", None)
    if parse is None:  # a tree from before it
        strip, loads = ledger_module.strip_entry, orjson.loads  # type: ignore[attr-defined]
        parse = lambda record: strip(loads(record))  # noqa: E731

    def parse_step(run: Run, record: bytes) -> Run:
        stage, out = run
        out.extend(stage.observe(parse(record)))
        return run

    warm: Run = (Stage(config), [])
    for event in events:
        step(warm, event)
    # as bench/detect_callgrind.py `clear_event_times`, written out: this script also runs against
    # checkouts from before it (`python <this file>` with their tree on PYTHONPATH)
    clear = getattr(windows, "clear_caches", None)
    if clear is not None:
        clear()
    else:
        windows.epoch_ms.cache_clear()  # type: ignore[attr-defined]  # an lru_cache then
    start: Run = (Stage(config), [])
    if args.parse:
        stage, out = functools.reduce(parse_step, records, start)
    else:
        stage, out = functools.reduce(step, events, start)
    print(
        f"{len(events)} events, {len(out)} alert versions; alerts"
        f" {hashlib.sha256(orjson.dumps(out)).hexdigest()[:16]}, state"
        f" {hashlib.sha256(orjson.dumps(stage.states, option=orjson.OPT_NON_STR_KEYS)).hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main()
