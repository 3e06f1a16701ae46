"""Every benchmark module (bench/*.py) imports, and every one with a command line (a `main` run
under `if __name__ == "__main__"`) prints its `--help` and starts nothing: each parses its
arguments before it does anything else.

The suite runs no benchmark, so this is what it sees of them. Their calls into the code they
measure are type-checked instead (pyproject.toml's [tool.mypy] packages include bench): a call
on a branch that no run on this tree takes (a fallback for older trees) is seen by mypy only.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(path.stem for path in BENCH.glob("*.py") if path.stem != "__init__")


def _has_cli(name: str) -> bool:
    """Whether the module defines `main` and calls it when run as a script."""
    tree = ast.parse((BENCH / f"{name}.py").read_text(encoding="utf-8"))
    defines = any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "main"
        for node in tree.body
    )
    runs = any(
        isinstance(node, ast.If)
        and "__main__" in ast.unparse(node.test)
        and any(
            isinstance(call, ast.Call) and ast.unparse(call.func) == "main"
            for call in ast.walk(node)
        )
        for node in tree.body
    )
    return defines and runs


CLIS = [name for name in MODULES if _has_cli(name)]


def test_the_modules_are_found() -> None:
    assert "dedup_callgrind" in CLIS
    assert "run" in CLIS
    assert "workload" in MODULES
    assert "workload" not in CLIS


@pytest.mark.parametrize("name", MODULES)
def test_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")


@pytest.mark.parametrize("name", CLIS)
def test_help(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"bench.{name}")

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(f"bench.{name} --help started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(sys, "argv", [f"bench.{name}", "--help"])
    with pytest.raises(SystemExit) as exc:
        module.main()
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
