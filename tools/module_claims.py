"""A pytest plugin: pytest processes share one run's test modules, each module run by the first to claim it.

`make test` (tools/split_tests.py) runs the broker's tests in two pytest processes at once. Both
collect the same tests; before a process runs a module's first test it claims the module by
creating a file named after it in the folder `PW_TEST_CLAIMS` names (`O_CREAT | O_EXCL`: one
process wins), and it runs the module's tests only if it won. So every module runs exactly once,
whole, in one process (its module-scoped workers are started once), and a process that finishes
its modules early takes the next ones: no list of durations to keep up to date.

Each process also writes there the list of every module it collected (`MODULES`) and, for each
module it has run to its end, a `done-` file: `unfinished(folder)` names the modules no process
finished (a process that crashed, or stopped at `-x`), which tools/split_tests.py reports.

Without `PW_TEST_CLAIMS` (plain `pytest`) the plugin does nothing. The folder must be new and
empty for each run: a module claimed in it already is not run again.

    PW_TEST_CLAIMS=DIR python -m pytest -p tools.module_claims -m broker    # in each process
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

CLAIMS_ENV = "PW_TEST_CLAIMS"
#: the file, in the claims folder, that lists every module collected (one node id a line)
MODULES = "modules"


def _name(module: str) -> str:
    return hashlib.sha256(module.encode()).hexdigest()[:32]


def claim(folder: Path, module: str) -> bool:
    """Whether this process is the first to claim `module` (a test file's node id) in `folder`."""
    try:
        fd = os.open(folder / _name(module), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as claimed:
        claimed.write(f"{os.getpid()} {module}\n")
    return True


def _done(folder: Path, module: str) -> None:
    (folder / f"done-{_name(module)}").write_text(module + "\n")


def unfinished(folder: Path) -> list[str]:
    """The modules collected whose tests no process ran to the end (crashed, stopped, never claimed)."""
    listed = folder / MODULES
    if not listed.exists():
        return []
    return [
        module
        for module in listed.read_text().splitlines()
        if module and not (folder / f"done-{_name(module)}").exists()
    ]


def _list_modules(folder: Path, modules: list[str]) -> None:
    """Write MODULES (every process writes the same list: each one whole, by a rename)."""
    scratch = folder / f".{MODULES}.{os.getpid()}"
    scratch.write_text("".join(f"{m}\n" for m in modules))
    os.replace(scratch, folder / MODULES)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """pytest's own loop (`_pytest.main.pytest_runtestloop`), over the modules this process claims."""
    named = os.environ.get(CLAIMS_ENV)
    if not named:
        return None  # pytest's own loop
    folder = Path(named)
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''}"
            " during collection"
        )
    if session.config.option.collectonly:
        return True
    modules: dict[str, list[pytest.Item]] = {}
    for item in session.items:  # in collection order (a module's tests kept together)
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    order = list(modules)
    _list_modules(folder, order)
    claimed: list[str] = []

    def next_claimed(start: int) -> int | None:
        for j in range(start, len(order)):
            if claim(folder, order[j]):
                claimed.append(order[j])
                return j
        return None

    current = next_claimed(0)
    while current is not None:
        items = modules[order[current]]
        following: int | None = None
        for k, item in enumerate(items):
            last = k + 1 == len(items)
            if not last:
                nextitem: pytest.Item | None = items[k + 1]
            else:
                # The next module is claimed before this module's last test runs: `nextitem`
                # must be the next test this process runs, for pytest to tear down exactly the
                # fixtures and folders that test does not share.
                following = next_claimed(current + 1)
                nextitem = None if following is None else modules[order[following]][0]
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if last:
                _done(folder, order[current])
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        current = following
    session.config.stash[_CLAIMED] = claimed
    return True


_CLAIMED = pytest.StashKey[list[str]]()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    claimed = config.stash.get(_CLAIMED, None)
    if claimed is not None:
        terminalreporter.write_line(
            f"this process ran {len(claimed)} test modules ({CLAIMS_ENV}); another ran the rest"
        )
