"""Detection's instruction count per event, for callgrind: repeatable on a shared machine.

The events are `bench.detector_costs`'s (the benchmark's mix, validated, masked and sequenced as
the ingest service does). One pass through `detectors.run.apply_event` warms the caches a long
run has warm (geo lookups, parsed addresses, compiled allowlists); then the event-time caches are
emptied (`clear_event_times`: each event's time is new in a real run, and so, since
`detectors.windows` remembers minutes, is each minute's first; the mix has about 20 events a
minute of event time, a live worker far more) and the events go through again, from empty
state, inside `functools.reduce`, so that callgrind collects that pass only:

    valgrind --tool=callgrind --toggle-collect=functools_reduce \\
        python -m bench.detect_callgrind [--count 5000] [--pure-detectors]

"Collected" in valgrind's summary, divided by `--count`, is the instructions per event. The
script prints digests of the final states and of the alert versions (to compare two trees).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from typing import Any

import orjson


def clear_event_times() -> None:
    """Empty the event-time caches: `detectors.windows.clear_caches` where there is one (the
    event times and the minutes), else `epoch_ms`'s cache (the code before the minutes)."""
    from detectors import windows

    clear = getattr(windows, "clear_caches", None)
    if clear is not None:
        clear()
    else:
        windows.epoch_ms.cache_clear()  # type: ignore[attr-defined]  # an lru_cache before the minutes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--pure-detectors", action="store_true")
    args = parser.parse_args()
    if args.pure_detectors:
        from tools.compile_detectors import pure_python

        pure_python()  # before anything imports detectors
    from bench.detector_costs import sequenced
    from bench.workload import stream
    from detectors.run import apply_event, new_state
    from pipeline.config import Settings

    entries = sequenced(stream(args.count))
    config = Settings.from_env({}).detect
    Run = tuple[dict[str, dict[str, Any]], dict[str, Any], list[Any]]

    def step(run: Run, entry: tuple[dict[str, Any], int]) -> Run:
        states, open_alerts, out = run
        event, seq = entry
        state = states.get(event["account_id"])
        if state is None:
            state = states[event["account_id"]] = new_state()
        applied = apply_event(state, event, seq, config, None, open_alerts.get, None)
        assert applied is not None
        for alert in applied.alerts:
            open_alerts[alert["alert_id"]] = alert
            out.append(alert)
        for key in applied.closed:
            open_alerts.pop(key, None)
        return run

    warm: Run = ({}, {}, [])
    for entry in entries:
        step(warm, entry)
    clear_event_times()
    start: Run = ({}, {}, [])
    states, _, out = functools.reduce(step, entries, start)
    print(
        f"{len(entries)} events, {len(out)} alert versions; states"
        f" {hashlib.sha256(orjson.dumps(states)).hexdigest()[:16]}, alerts"
        f" {hashlib.sha256(orjson.dumps(out)).hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main()
