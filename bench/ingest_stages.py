"""CPU per event of each stage of the ingest service, in-process, on the benchmark's mix (no Kafka).

The stages are the ones a worker runs for every source message, over the same events as
`make bench` (bench/run.py `stream`):

- validate: the raw message bytes to a normalized event (or a rejection), and the key check
  (pipeline/action_decoder.py);
- mask: bank and personal data masked (pipeline/masking.py);
- sequence: dedup, `seq`, the hash chain and the ledger record, over one canonical encoding
  (pipeline/ledger.py `LedgerState.sequence`);
- detect: every detector, alerts folded and encoded (detectors/run.py `apply_event`);
- encode: the state records, once per touched account and changed alert per batch.

`--label before` results (bench/results/*-ingest-stages-before.*) were measured on the Faust agent path
this service replaced (the same stages, one dict-based validation, the canonical form built
twice).

Each stage runs over all events in turn (its input is the previous stage's output), timed with
the process's CPU clock; a run starts from empty state, and the figure is the median of
`--runs` runs. Results go to bench/results/<date>-ingest-stages.json and .md.

The detectors, and the validation, masking and sequencing modules, run as built: compiled where
the optional mypyc build is present (tools/compile_detectors.py, `make compile`), else pure
Python; `--pure-detectors` imports the pure-Python modules of the build even where the compiled
ones are built. The results say which ran.

    python -m bench.ingest_stages [--count 50000] [--runs 5] [--batch 500] [--pure-detectors]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported in the functions: after `--pure-detectors` took effect
    from pipeline.config import Settings

STAGES = ("validate", "mask", "sequence", "detect", "encode")


def detectors_variant() -> str:
    """Which detectors this process runs: pure Python, or how many of the loaded modules of
    the optional mypyc build (tools/compile_detectors.py) are compiled."""
    from tools.compile_detectors import loaded

    modules = loaded()
    compiled, total = len(modules["compiled"]), len(modules["compiled"]) + len(modules["python"])
    if not compiled:
        return "pure Python"
    return f"mypyc-compiled ({compiled} of the {total} modules of the build loaded)"


class Stages:
    """The ingest service's per-record work (streams/ingest_batch.py), stage by stage, without
    Kafka: the same functions `Ingest.batch` calls, in the same order."""

    def __init__(self, settings: Settings) -> None:
        from streams.ingest_batch import Ingest, IngestBatch, PartitionState

        self.settings = settings
        self.ingest = Ingest(settings)
        self.state = PartitionState(0, settings.dedup_window_days)
        self.out = IngestBatch(0)
        self._batch = IngestBatch

    def stage_validate(self, chunk: list[tuple[bytes, bytes]], offsets: range) -> list[Any]:
        from pipeline.action_decoder import decode_action
        from pipeline.event import Rejected

        out: list[Any] = []
        max_bytes = self.settings.max_event_bytes
        for (key, value), offset in zip(chunk, offsets, strict=True):
            try:
                action = decode_action(value, max_bytes)
                if key != action["account_id"].encode():
                    raise Rejected("wrong_key", "the message key must be the event's account_id")
                out.append((key, action, offset))
            except Rejected as exc:
                out.append(exc)
        return out

    def stage_mask(self, validated: list[Any]) -> list[Any]:
        mask = self.ingest.masker.mask_event
        return [(v[0], mask(v[1]), v[2]) for v in validated if not isinstance(v, Exception)]

    def stage_sequence(self, masked: list[Any]) -> list[Any]:
        self.out = self._batch(0)
        ledger, now, out = self.state.ledger, self.ingest.now, []
        # as `Ingest.decode` does before a batch is sequenced (the dedup window's compaction and
        # batch lookup; the filters' check in bounded mode)
        digests, _ = ledger.prepare([(e["account_id"], e["event_id"]) for _, e, _ in masked], now())
        for (key, event, offset), digest in zip(masked, digests, strict=True):
            sequenced = ledger.sequence(event, now(), offset, digest)
            if sequenced is not None:
                self.out.ledger.append((key, sequenced[1]))
                out.append((event, sequenced[0]))
        return out

    def stage_detect(self, entries: list[Any]) -> list[Any]:
        detect, state, out = self.ingest._detect, self.state, self.out
        for event, seq in entries:
            detect(state, out, event, seq, 0, None)
        return out.alerts

    def stage_encode(self, entries: list[Any]) -> int:
        return len(self.out.account_records()) + len(self.out.alert_records())


def run_once(
    messages: list[tuple[bytes, bytes]], batch: int
) -> tuple[dict[str, float], dict[str, int]]:
    """One pass of every stage over `messages`: CPU seconds per stage, and what came out."""
    from pipeline.config import Settings

    core = Stages(Settings.from_env({}))
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        gc.collect()
        started = time.process_time()
        out = fn()
        seconds[stage] = seconds.get(stage, 0.0) + time.process_time() - started
        return out

    for start in range(0, len(messages), batch):
        chunk = messages[start : start + batch]
        offsets = range(start, start + len(chunk))
        validated = timed("validate", lambda c=chunk, o=offsets: core.stage_validate(c, o))  # type: ignore[misc]
        masked = timed("mask", lambda v=validated: core.stage_mask(v))  # type: ignore[misc]
        entries = timed("sequence", lambda m=masked: core.stage_sequence(m))  # type: ignore[misc]
        alerts = timed("detect", lambda e=entries: core.stage_detect(e))  # type: ignore[misc]
        records = timed("encode", lambda e=entries: core.stage_encode(e))  # type: ignore[misc]
        counts["rejected"] = counts.get("rejected", 0) + sum(
            1 for v in validated if isinstance(v, Exception)
        )
        counts["entries"] = counts.get("entries", 0) + len(entries)
        counts["alert_versions"] = counts.get("alert_versions", 0) + len(alerts)
        counts["records"] = counts.get("records", 0) + records
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--batch",
        type=int,
        default=500,
        help="source messages per batch (state records are per batch)",
    )
    parser.add_argument("--label", default="", help="a suffix for the result files (e.g. before)")
    parser.add_argument(
        "--pure-detectors",
        action="store_true",
        help="the pure-Python detectors even where the mypyc build is present",
    )
    args = parser.parse_args()
    if args.pure_detectors:
        from tools.compile_detectors import pure_python

        pure_python()  # before anything imports detectors
    from bench.workload import stream, write_results

    messages = stream(args.count)
    runs = []
    for i in range(args.runs):
        seconds, counts = run_once(messages, args.batch)
        runs.append(seconds)
        print(
            f"run {i + 1}: "
            + ", ".join(f"{s} {seconds[s] / args.count * 1e6:.1f}" for s in STAGES),
            flush=True,
        )
    per_event = {
        s: round(statistics.median(r[s] for r in runs) / args.count * 1e6, 2) for s in STAGES
    }
    per_event["total"] = round(sum(per_event[s] for s in STAGES), 2)
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.ingest_stages --count {args.count} --runs {args.runs} --batch {args.batch}"
        + (" --pure-detectors" if args.pure_detectors else "")
        + (f" --label {args.label}" if args.label else ""),
        "events": args.count,
        "detectors": detectors_variant(),
        "counts": counts,
        "cpu_us_per_event": per_event,
        "runs_us_per_event": [{s: round(r[s] / args.count * 1e6, 2) for s in STAGES} for r in runs],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }
    lines = [
        f"# CPU per event by stage, {figures['measured_at']}",
        "",
        f"Command: `{figures['command']}`; median of {args.runs} runs, process CPU time.",
        "",
        f"Detectors: {figures['detectors']}.",
        "",
        "| stage | µs per event |",
        "|---|---|",
        *(f"| {s} | {per_event[s]} |" for s in (*STAGES, "total")),
        "",
        f"Output: {counts}",
        "",
    ]
    write_results("ingest-stages", args.label, figures, lines)


if __name__ == "__main__":
    main()
