"""The provider-wide stage's instruction count per event (`Stage.observe`), for callgrind:
repeatable on a shared machine, like bench/detect_callgrind.py for the account rules.

The events are `bench.provider_stage_costs`'s (the ledger the ingest service writes for the
benchmark's mix, over `--partitions` partitions, in the stage's merge order, parsed beforehand).
One pass through a `Stage` warms the caches a long run has warm (geo lookups, parsed addresses,
compiled allowlists); then the event-time caches are emptied (each event's time is new in a real
run) and the events go through a new `Stage` again, from empty state, inside `functools.reduce`,
so that callgrind collects that pass only:

    valgrind --tool=callgrind --toggle-collect=functools_reduce \\
        python -m bench.provider_callgrind [--count 5000] [--pure-detectors]

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
    args = parser.parse_args()
    if args.pure_detectors:
        from tools.compile_detectors import pure_python

        pure_python()  # before anything imports detectors
    from bench.provider_stage_costs import ledger, merged
    from detectors import windows
    from detectors.provider_wide.run import Stage
    from pipeline.alert import Alert
    from pipeline.config import Settings
    from pipeline.event import Event
    from pipeline.ledger import event_of

    events = [event_of(orjson.loads(v)) for v in merged(ledger(args.count, args.partitions))]
    config = Settings.from_env({}).detect

    Run = tuple[Stage, list[Alert]]

    def step(run: Run, event: Event) -> Run:
        stage, out = run
        out.extend(stage.observe(event))
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
        windows.epoch_ms.cache_clear()
    start: Run = (Stage(config), [])
    stage, out = functools.reduce(step, events, start)
    print(
        f"{len(events)} events, {len(out)} alert versions; alerts"
        f" {hashlib.sha256(orjson.dumps(out)).hexdigest()[:16]}, state"
        f" {hashlib.sha256(orjson.dumps(stage.states, option=orjson.OPT_NON_STR_KEYS)).hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main()
