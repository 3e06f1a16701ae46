"""tools/module_claims.py: pytest processes that share one run's modules, each module run once, whole.

Real pytest processes on a scratch suite of four modules in three folders, each with a
module-scoped fixture and tests that write what ran, and when, to a shared file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pipeline.config import REPO_ROOT
from tools.module_claims import CLAIMS_ENV, claim, unfinished
from tools.split_tests import _merge_failed

MODULES = ("a/test_one.py", "b/test_two.py", "a/test_three.py", "c/test_four.py")
TESTS = ("test_x", "test_y", "test_z")


def suite(root: Path, *, meet: bool = False, crash: str = "") -> Path:
    """Four modules in three folders, three tests each (pytest collects them folder by folder:
    a/test_one, a/test_three, b/test_two, c/test_four).

    `meet`: a module's setup waits (up to 60 s) until two processes have set up a module, so
    that each of two processes started together takes at least one. `crash`: the test (node id
    as `b/test_two.py::test_y`) that ends its process at once (`os._exit`)."""
    record = root / "ran.txt"
    (root / "pytest.ini").write_text("[pytest]\n")
    for module in MODULES:
        path = root / "suite" / module
        path.parent.mkdir(parents=True, exist_ok=True)
        tests = "".join(
            f"def {name}(per_module):\n    note('{module}::{name}')\n"
            + ("    os._exit(3)\n" if crash == f"{module}::{name}" else "")
            + "\n"
            for name in TESTS
        )
        path.write_text(
            "import os, time\nimport pytest\n\n"
            f"def note(what):\n    with open({str(record)!r}, 'a') as f:\n"
            "        f.write(f'{os.getpid()} {what}\\n')\n\n"
            "def meet():\n"
            f"    if not {meet}:\n        return\n"
            "    end = time.monotonic() + 60\n"
            "    while time.monotonic() < end:\n"
            f"        with open({str(record)!r}) as f:\n"
            "            pids = {line.split()[0] for line in f if ' setup ' in line}\n"
            "        if len(pids) >= 2:\n            return\n"
            "        time.sleep(0.05)\n\n"
            "@pytest.fixture(scope='module')\ndef per_module():\n"
            f"    note('setup {module}')\n    meet()\n    yield\n"
            f"    note('teardown {module}')\n\n" + tests
        )
    return record


def pytest_run(root: Path, claims: Path | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != CLAIMS_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if claims is not None:
        env[CLAIMS_ENV] = str(claims)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tools.module_claims",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(root),
            "-c",
            str(root / "pytest.ini"),
            str(root / "suite"),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def lines(record: Path) -> list[tuple[int, str]]:
    out = []
    for line in record.read_text().splitlines():
        pid, what = line.split(" ", 1)
        out.append((int(pid), what))
    return out


def test_a_process_runs_only_the_modules_it_claims_and_tears_each_down(tmp_path: Path) -> None:
    record = suite(tmp_path)
    claims = tmp_path / "claims"
    claims.mkdir()
    # another process took a/test_three and b/test_two: this one goes from a/test_one to
    # c/test_four, out of folder a and into folder c
    for module in ("suite/b/test_two.py", "suite/a/test_three.py"):
        assert claim(claims, module)
    proc = pytest_run(tmp_path, claims)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "6 passed" in out and "ran 2 test modules" in out, out
    assert [what for _, what in lines(record)] == [
        "setup a/test_one.py",
        *(f"a/test_one.py::{t}" for t in TESTS),
        "teardown a/test_one.py",
        "setup c/test_four.py",
        *(f"c/test_four.py::{t}" for t in TESTS),
        "teardown c/test_four.py",
    ]
    assert not claim(claims, "suite/a/test_one.py")  # claimed by the run
    assert not claim(claims, "suite/c/test_four.py")


def test_two_processes_run_every_module_once_between_them(tmp_path: Path) -> None:
    record = suite(tmp_path, meet=True)
    claims = tmp_path / "claims"
    claims.mkdir()
    procs = [pytest_run(tmp_path, claims) for _ in range(2)]
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    ran = lines(record)
    assert Counter(what for _, what in ran) == Counter(
        [f"{m}::{t}" for m in MODULES for t in TESTS]
        + [f"{step} {m}" for m in MODULES for step in ("setup", "teardown")]
    )
    for module in MODULES:  # whole, in one process, between its fixture's setup and teardown
        mine = [(pid, what) for pid, what in ran if module in what]
        assert len({pid for pid, _ in mine}) == 1, mine
        assert [what for _, what in mine] == [
            f"setup {module}",
            *(f"{module}::{t}" for t in TESTS),
            f"teardown {module}",
        ]
    assert {pid for pid, _ in ran} == {proc.pid for proc in procs}, ran  # both took modules
    assert unfinished(claims) == []


def test_the_modules_a_stopped_process_left_are_named(tmp_path: Path) -> None:
    record = suite(tmp_path, crash="b/test_two.py::test_y")
    claims = tmp_path / "claims"
    claims.mkdir()
    proc = pytest_run(tmp_path, claims)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    assert [what for _, what in lines(record)][-2:] == [
        "b/test_two.py::test_x",
        "b/test_two.py::test_y",
    ]
    # b/test_two.py claimed and not ended; c/test_four.py never claimed
    assert unfinished(claims) == ["suite/b/test_two.py", "suite/c/test_four.py"]


def test_the_last_failed_record_of_each_process_is_kept(tmp_path: Path) -> None:
    """pytest's `--lf` record after processes that each ran other tests, from one record before
    (tools/split_tests.py gives each its own cache: a shared one keeps the last writer's)."""
    before = {"t.py::fixed": True, "t.py::still": True, "u.py::not_run": True}
    afters = [
        {"t.py::still": True, "u.py::not_run": True, "t.py::new": True},  # `fixed` passed here
        {"t.py::fixed": True, "t.py::still": True, "u.py::not_run": True, "v.py::new": True},
    ]
    folders = []
    for i, after in enumerate(afters):
        folder = tmp_path / f"cache-{i}"
        (folder / "v" / "cache").mkdir(parents=True)
        (folder / "v" / "cache" / "lastfailed").write_text(json.dumps(after))
        folders.append(folder)
    folders.append(tmp_path / "never-written")  # a process that wrote no cache
    assert _merge_failed(before, folders) == {
        "t.py::still": True,
        "u.py::not_run": True,
        "t.py::new": True,
        "v.py::new": True,
    }


def test_without_the_claims_folder_pytest_runs_everything(tmp_path: Path) -> None:
    record = suite(tmp_path)
    proc = pytest_run(tmp_path, None)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "12 passed" in out, out
    assert "test modules" not in out
    assert len(lines(record)) == 12 + 8
