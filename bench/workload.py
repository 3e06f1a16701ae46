"""The benchmark's workload: the realistic event mix and how it is produced to a namespace.

Shared by the benchmarks of bench/ (bench/run.py, bench/ingest_stages.py, ...), with
`write_results`, which writes a benchmark's figures and report to bench/results/.
"""

from __future__ import annotations

import platform
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.local_worker import Namespace, Worker
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.kafka_io import action_key, ensure_topics, producer

RESULTS = REPO_ROOT / "bench" / "results"
#: More accounts than the demo's six, so the account-keyed partitions share the load.
ACCOUNTS, PROVIDERS = 48, 12
#: Worker settings for every namespace of the run (`--env PW_COMMIT_INTERVAL=0.1`).
WORKER_ENV: dict[str, str] = {"PW_LOG_LEVEL": "warning"}


def iter_stream(count: int, seed: int = 99) -> Iterator[tuple[bytes, bytes]]:
    """The realistic mix as (key, value) messages: benign traffic with every attack kind."""
    for event, _ in generate(
        count,
        seed=seed,
        accounts=ACCOUNTS,
        providers=PROVIDERS,
        attack_rate=0.001,
        attack_kinds=ATTACKS,
    ):
        yield action_key(event), orjson.dumps(event)


def stream(count: int, seed: int = 99) -> list[tuple[bytes, bytes]]:
    """`iter_stream`, held in a list."""
    return list(iter_stream(count, seed))


_LENGTHS = struct.Struct(">II")


class StoredStream:
    """The realistic mix written once to a file and read back as often as needed: 10,000,000
    messages held as Python objects would take over 20 GiB."""

    def __init__(self, count: int, seed: int = 99, folder: Path | None = None) -> None:
        self.count = count
        with tempfile.NamedTemporaryFile(
            prefix="pw-bench-stream-", dir=folder, delete=False
        ) as out:
            self.path = Path(out.name)
            for key, value in iter_stream(count, seed):
                out.write(_LENGTHS.pack(len(key), len(value)) + key + value)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        with self.path.open("rb", buffering=1024 * 1024) as source:
            while header := source.read(_LENGTHS.size):
                key_len, value_len = _LENGTHS.unpack(header)
                yield source.read(key_len), source.read(value_len)

    def head(self, n: int) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for message in self:
            if len(out) >= n:
                break
            out.append(message)
        return out

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def produce(ns: Namespace, messages: Iterable[tuple[bytes, bytes]]) -> float:
    """Produce every message to the namespace's actions topic; return the seconds it took."""
    ensure_topics(ns.settings)
    prod = producer(ns.settings, linger_ms=20, batch_size=256 * 1024)
    started = time.monotonic()
    topic = ns.settings.actions_topic
    for key, value in messages:
        prod.send(topic, key=key, value=value)
    prod.flush()
    prod.close()
    return time.monotonic() - started


@contextmanager
def worker_on_backlog(ns: Namespace, messages: Iterable[tuple[bytes, bytes]]) -> Iterator[int]:
    """Produce `messages` to the namespace, start one worker on them and yield its pid; the
    worker is stopped on the way out."""
    produce(ns, messages)
    worker = Worker(ns).start()
    assert worker.proc is not None
    try:
        yield worker.proc.pid
    finally:
        worker.stop()


def interpreter() -> str:
    """The interpreter the benchmark and its workers run on (the workers are started with
    `sys.executable`), and whether its executable carries the interpreter or loads a shared
    libpython: an unoptimised shared build (pyenv's default) costs about a fifth more CPU per
    event than Debian's static one (docs/performance.md, session 36)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        linked = "unknown linkage"
    else:
        linked = "shared libpython" if "libpython" in maps else "static interpreter"
    built, compiler = platform.python_build()[1], platform.python_compiler()
    return f"CPython {platform.python_version()} built {built} by {compiler} ({linked})"


def write_results(name: str, label: str, figures: dict[str, Any], lines: list[str]) -> None:
    """Write `figures` to bench/results/<today>-<name>[-<label>].json and the report `lines` to
    the .md beside it, and print the report."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"{datetime.now(UTC):%Y-%m-%d}-{name}" + (f"-{label}" if label else ""))
    stem.with_suffix(".json").write_text(
        orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    report = "\n".join(lines)
    stem.with_suffix(".md").write_text(report)
    print(report)
