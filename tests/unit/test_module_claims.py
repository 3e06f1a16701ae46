"""tools/module_claims.py: pytest processes that share one run's modules, each module run once, whole.

Real pytest processes on a scratch suite of four modules in three folders, each with a
module-scoped fixture and tests that write what ran, and when, to a shared file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pipeline.config import REPO_ROOT
from tools.module_claims import CLAIMS_ENV, claim

MODULES = ("a/test_one.py", "b/test_two.py", "a/test_three.py", "c/test_four.py")
TESTS = ("test_x", "test_y", "test_z")


def suite(root: Path, pause: float = 0.0) -> Path:
    """Four modules, three folders (a module of folder `a` on each side of `b`), three tests each."""
    record = root / "ran.txt"
    (root / "pytest.ini").write_text("[pytest]\n")
    for module in MODULES:
        path = root / "suite" / module
        path.parent.mkdir(parents=True, exist_ok=True)
        tests = "".join(
            f"def {name}(per_module):\n    note('{module}::{name}')\n    time.sleep({pause})\n\n"
            for name in TESTS
        )
        path.write_text(
            "import os, time\nimport pytest\n\n"
            f"def note(what):\n    with open({str(record)!r}, 'a') as f:\n"
            "        f.write(f'{os.getpid()} {what}\\n')\n\n"
            "@pytest.fixture(scope='module')\ndef per_module():\n"
            f"    note('setup {module}')\n    yield\n    note('teardown {module}')\n\n" + tests
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
    # another process took b/test_two and a/test_three: this one goes from a/test_one to c/test_four
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
    record = suite(tmp_path, pause=0.3)
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


def test_without_the_claims_folder_pytest_runs_everything(tmp_path: Path) -> None:
    record = suite(tmp_path)
    proc = pytest_run(tmp_path, None)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "12 passed" in out, out
    assert "test modules" not in out
    assert len(lines(record)) == 12 + 8
