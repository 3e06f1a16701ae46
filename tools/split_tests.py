"""`make test`'s pytest: the broker's tests in one process, every other test beside it in another.

tests/conftest.py marks `broker` every test that uses the broker (the `kafka_broker` fixture,
directly or through another fixture) or is marked `integration` or `server`. Those share one
broker and one ClickHouse server, and some stop them or load the machine, so they run one after
the other, in one pytest process, as before. The rest (unit, detector, parser, chat card and
page tests: no broker) run at the same time in a second pytest process, on the other core, at a
lower priority (nice 10), so that the broker's half, the longer one, keeps the CPU when both
want it. The broker half prints as it goes; the other half's output is kept in a file and
printed after it, under a header. The exit status is 0 only when both halves pass.

    python -m tools.split_tests [pytest arguments, e.g. paths]    # make test
    make test PYTEST_PROCS=1                                       # plain `pytest -q` instead

Why not pytest-xdist's `--dist loadgroup`: with pytest 9.2 and pytest-xdist 3.8 it does not
group (xdist names a group by rewriting `item._nodeid`, which pytest 9.2 no longer reads:
pytest-dev/pytest-xdist#1386, open), so the broker's tests ran side by side. Two plain pytest
runs need no plugin and keep each half's output whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

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
    with tempfile.NamedTemporaryFile(prefix="pw-tests-rest-", suffix=".log", delete=False) as log:
        rest_log = Path(log.name)
        rest = subprocess.Popen(  # noqa: S603 (this interpreter, pytest, our arguments)
            [*pytest, "-m", HALVES["the rest"], *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_yield_cpu,  # os.nice only, between the fork and the exec
        )
    try:
        print(
            f"== the broker's tests (the other tests run beside them; their output: {rest_log})",
            flush=True,
        )
        broker_rc = subprocess.run(  # noqa: S603
            [*pytest, "-m", HALVES["broker"], *args]
        ).returncode
        rest_rc = rest.wait()
    except BaseException:
        rest.terminate()
        rest.wait(30)
        raise
    print(f"\n== the other tests (-m '{HALVES['the rest']}'), run beside the broker's")
    print(rest_log.read_text(errors="replace"), end="")
    rest_log.unlink()
    codes = {"broker": broker_rc, "the rest": rest_rc}
    print("\n== " + ", ".join(f"{half}: exit {rc}" for half, rc in codes.items()))
    failed = [rc for rc in codes.values() if rc not in (0, NO_TESTS)]
    if failed:
        return failed[0]
    return NO_TESTS if all(rc == NO_TESTS for rc in codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
