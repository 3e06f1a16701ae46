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
exit status is 0 only when every process passes.

    python -m tools.split_tests [pytest arguments, e.g. paths]    # make test
    make test PYTEST_PROCS=1                                       # plain `pytest -q` instead

Why not pytest-xdist's `--dist loadgroup` or `loadfile`: with pytest 9.2 and pytest-xdist 3.8
`loadgroup` does not group (xdist names a group by rewriting `item._nodeid`, which pytest 9.2
no longer reads: pytest-dev/pytest-xdist#1386, open), and neither runs the broker-free tests at
a lower priority beside the rest. Plain pytest runs need no plugin but ours and keep each
process's output whole.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.module_claims import CLAIMS_ENV

#: pytest's "no tests were collected": a half with nothing to run (e.g. only unit test paths given)
NO_TESTS = 5
HALVES = {"broker": "broker and not slow", "the rest": "not broker and not slow"}
#: the other half's `nice` value (see `_yield_cpu`)
REST_NICENESS = 10


def _yield_cpu() -> None:
    """The other half runs at a lower priority (nice 10, its servers and browsers too): the
    broker's half is the longer one, and its workers and brokers get the CPU first."""
    os.nice(REST_NICENESS)


def main(args: Sequence[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", "-q"]
    broker = [*pytest, "-p", "tools.module_claims", "-m", HALVES["broker"], *args]
    claims = tempfile.mkdtemp(prefix="pw-test-claims-")
    claiming = {**os.environ, CLAIMS_ENV: claims}
    logs = {
        name: Path(tempfile.mkstemp(prefix=f"pw-tests-{name}-", suffix=".log")[1])
        for name in ("rest", "broker-2")
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with logs["rest"].open("wb") as log:
            procs["the rest"] = subprocess.Popen(  # noqa: S603 (this interpreter, pytest, our arguments)
                [*pytest, "-m", HALVES["the rest"], *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_yield_cpu,  # os.nice only, between the fork and the exec
            )
        print(
            "== the broker's tests, first process (the other tests run beside it, then a second"
            f" process of the broker's tests; their output: {logs['rest']}, {logs['broker-2']})",
            flush=True,
        )
        procs["broker"] = subprocess.Popen(broker, env=claiming)  # noqa: S603
        procs["the rest"].wait()
        if procs["broker"].poll() is None:  # modules may be left: a second process takes some
            with logs["broker-2"].open("wb") as log:
                procs["broker, second process"] = subprocess.Popen(  # noqa: S603
                    broker, env=claiming, stdout=log, stderr=subprocess.STDOUT
                )
        codes = {name: proc.wait() for name, proc in procs.items()}
    except BaseException:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)
        raise
    finally:
        shutil.rmtree(claims, ignore_errors=True)
    for name, log_path in (
        (
            "the other tests (-m '" + HALVES["the rest"] + "'), run beside the broker's",
            logs["rest"],
        ),
        ("the broker's tests, second process", logs["broker-2"]),
    ):
        if log_path.stat().st_size:
            print(f"\n== {name}")
            print(log_path.read_text(errors="replace"), end="")
        log_path.unlink()
    print("\n== " + ", ".join(f"{name}: exit {rc}" for name, rc in codes.items()))
    failed = [rc for rc in codes.values() if rc not in (0, NO_TESTS)]
    if failed:
        return failed[0]
    return NO_TESTS if all(rc == NO_TESTS for rc in codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
