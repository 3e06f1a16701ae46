"""detectors/rules/ holds one small module per detector id, each standing alone.

The file names are the detector ids (the detect agent keeps each rule's state under that name),
each with its fixture beside it; a rule's only public function is `detect`; no rule imports
another rule; and findings are built only through `ctx.finding`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import orjson
import pytest

from detectors import MODULES, rules

RULES_DIR = Path(rules.__file__).parent
#: Needs a trained model, so its cases are in tests/ml instead of a fixture.
WITHOUT_FIXTURE = {"behaviour_anomaly"}


def _tree(name: str) -> ast.Module:
    return ast.parse((RULES_DIR / f"{name}.py").read_text())


def test_files_are_the_detector_ids_and_their_fixtures() -> None:
    files = {p.name for p in RULES_DIR.iterdir() if p.name != "__pycache__"}
    expected = {"__init__.py"} | {f"{m}.py" for m in MODULES}
    expected |= {f"{m}.json" for m in MODULES if m not in WITHOUT_FIXTURE}
    assert files == expected


@pytest.mark.parametrize("name", MODULES)
def test_module_name_is_its_detector_id(name: str) -> None:
    module = importlib.import_module(f"detectors.rules.{name}")
    assert name == module.DETECTOR
    if name not in WITHOUT_FIXTURE:
        assert orjson.loads((RULES_DIR / f"{name}.json").read_bytes())["detector"] == name


@pytest.mark.parametrize("name", MODULES)
def test_detect_is_the_only_public_function(name: str) -> None:
    module = importlib.import_module(f"detectors.rules.{name}")
    public = {
        n
        for n, value in vars(module).items()
        if inspect.isfunction(value)
        and value.__module__ == module.__name__
        and not n.startswith("_")
    }
    assert public == {"detect"}


@pytest.mark.parametrize("name", MODULES)
def test_no_rule_imports_another_or_builds_findings_by_hand(name: str) -> None:
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom):
            imported = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        else:
            imported = []
        assert not [i for i in imported if i.startswith("detectors.rules")], name
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "Finding", f"{name}: build findings with ctx.finding"


def test_rules_stay_small() -> None:
    lines = sorted(len((RULES_DIR / f"{m}.py").read_text().splitlines()) for m in MODULES)
    assert lines[-1] <= 400
    assert (lines[len(lines) // 2 - 1] + lines[len(lines) // 2]) / 2 <= 80
