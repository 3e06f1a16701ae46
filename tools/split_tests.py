"""`make test`'s pytest: the broker's tests in two processes, every other test beside them.

tests/conftest.py marks `broker` every test that uses the broker (the `kafka_broker` fixture,
directly or through another fixture) or is marked `integration` or `server`. Three pytest
processes share the work:

- the broker's tests, in one process from the start; it prints as it goes;
- the rest (unit, detector, parser, chat card and page tests: no broker), beside it, at a lower
  priority (nice 10, its servers and browsers too), its output kept in a file;
- when the rest is done, the broker's tests again, in a second process: the two take the
  broker's test modules between them, each module whole in one of them
  (tools/module_claims.py), its output kept in a file.

The broker's tests mostly wait (for workers to start, stop and catch up; for records, merges and
deadlines): alone, they kept about a third of the two cores busy. No test stops the shared
broker (the fault tests stop brokers of their own, tests/reliability/harness.py), and every
test works in a namespace of its own (topics, consumer groups, data folder), so two modules can
run at once. The kept outputs are printed after the first process's, each under a header. The
exit status is 0 only when every process passes and every broker test module was run to its end
(those that were not, when a process stopped early, are listed). Each process keeps pytest's
cache in a folder of its own, started from the checkout's, and the tests each found failed or
fixed are merged into the checkout's record for `pytest --lf`.

    python -m tools.split_tests [pytest arguments, e.g. paths]    # make test
    make test PYTEST_PROCS=1                                       # plain `pytest -q` instead

Why not pytest-xdist's `--dist loadgroup` or `loadfile`: with pytest 9.2 and pytest-xdist 3.8
`loadgroup` does not group (xdist names a group by rewriting `item._nodeid`, which pytest 9.2
no longer reads: pytest-dev/pytest-xdist#1386, open), and neither runs the broker-free tests at
a lower priority beside the rest. Plain pytest runs need no plugin but ours and keep each
process's output whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.module_claims import CLAIMS_ENV, unfinished

#: pytest's "no tests were collected": a half with nothing to run (e.g. only unit test paths given)
NO_TESTS = 5
HALVES = {"broker": "broker and not slow", "the rest": "not broker and not slow"}
#: the other half's `nice` value (see `_yield_cpu`)
REST_NICENESS = 10


def _yield_cpu() -> None:
    """The other half runs at a lower priority (nice 10, its servers and browsers too): the
    broker's half is the longer one, and its workers and brokers get the CPU first."""
    os.nice(REST_NICENESS)


#: pytest's record of the tests that failed last (`--lf`), under the rootdir
LASTFAILED = Path(__file__).resolve().parent.parent / ".pytest_cache" / "v" / "cache" / "lastfailed"
#: the processes, in the order of the last line (`== broker: exit 0, ...`)
NAMES = ("broker", "the rest", "broker, second process")


def _read_failed(path: Path) -> dict[str, bool] | None:
    """A `lastfailed` record, or None where there is none to read."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _merge_failed(before: dict[str, bool], caches: Sequence[Path]) -> dict[str, bool]:
    """pytest's `lastfailed` after every process: each started from `before` in a cache of its
    own and ran tests no other one ran, so what each added or dropped stands (a cache without a
    record, from a process that ended before writing it, changes nothing)."""
    merged = dict(before)
    for cache in caches:
        after = _read_failed(cache / "v" / "cache" / "lastfailed")
        if after is None:
            continue
        for test in before.keys() - after.keys():
            merged.pop(test, None)
        merged.update({test: True for test in after.keys() - before.keys()})
    return merged


def main(args: Sequence[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", "-q"]
    work = Path(tempfile.mkdtemp(prefix="pw-tests-"))
    claims = work / "claims"
    claims.mkdir()
    claiming = {**os.environ, CLAIMS_ENV: str(claims)}
    # Each process keeps pytest's cache in a folder of its own, started from the checkout's, and
    # their `--lf` records are merged at the end: one cache for all would keep the last writer's.
    before = _read_failed(LASTFAILED) or {}
    caches = {name: work / f"cache-{i}" for i, name in enumerate(NAMES)}
    for cache in caches.values():
        (cache / "v" / "cache").mkdir(parents=True)
        (cache / "v" / "cache" / "lastfailed").write_text(json.dumps(before))

    def command(name: str, marks: str, *extra: str) -> list[str]:
        return [*pytest, "-o", f"cache_dir={caches[name]}", *extra, "-m", marks, *args]

    logs = {"the rest": work / "rest.log", "broker, second process": work / "broker-2.log"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with logs["the rest"].open("wb") as log:
            procs["the rest"] = subprocess.Popen(  # noqa: S603 (this interpreter, pytest, our arguments)
                command("the rest", HALVES["the rest"]),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_yield_cpu,  # os.nice only, between the fork and the exec
            )
        print(
            "== the broker's tests, first process (the other tests run beside it, then, if"
            f" broker tests are left, a second process of them; their output: {work})",
            flush=True,
        )
        plugin = ("-p", "tools.module_claims")
        procs["broker"] = subprocess.Popen(  # noqa: S603
            command("broker", HALVES["broker"], *plugin), env=claiming
        )
        procs["the rest"].wait()
        if procs["broker"].poll() is None:  # modules may be left: a second process takes some
            with logs["broker, second process"].open("wb") as log:
                procs["broker, second process"] = subprocess.Popen(  # noqa: S603
                    command("broker, second process", HALVES["broker"], *plugin),
                    env=claiming,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        codes = {name: procs[name].wait() for name in NAMES if name in procs}
    except BaseException:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)
        print(f"\n== stopped; the outputs kept so far are in {work}", file=sys.stderr)
        raise
    LASTFAILED.parent.mkdir(parents=True, exist_ok=True)
    merged = _merge_failed(before, [caches[name] for name in procs])
    LASTFAILED.write_text(json.dumps(merged, indent=2, sort_keys=True))
    for name, log_path in (
        (
            "the other tests (-m '" + HALVES["the rest"] + "'), run beside the broker's",
            logs["the rest"],
        ),
        ("the broker's tests, second process", logs["broker, second process"]),
    ):
        if log_path.exists():
            print(f"\n== {name}")
            print(log_path.read_text(errors="replace"), end="")
    left = unfinished(claims)
    shutil.rmtree(work, ignore_errors=True)
    if left:
        print(f"\n== {len(left)} broker test modules not run to their end (a process stopped):")
        print("".join(f"   {module}\n" for module in left), end="")
    print("\n== " + ", ".join(f"{name}: exit {rc}" for name, rc in codes.items()))
    failed = [rc for rc in codes.values() if rc not in (0, NO_TESTS)]
    if failed:
        return failed[0]
    if left:
        return 1
    return NO_TESTS if all(rc == NO_TESTS for rc in codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
