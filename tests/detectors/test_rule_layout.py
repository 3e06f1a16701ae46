"""detectors/rules/ and detectors/provider_wide/rules/ hold one small module per detector id, each
standing alone.

The file names are the detector ids (the detect agent and the provider stage keep each rule's
state under that name), each with its fixture beside it; a rule's only public function is
`detect`; no rule imports another rule (of either kind); findings are built only through
`ctx.finding`; and no detector id is both an account rule and a provider-wide one.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import orjson
import pytest

from detectors import MODULES, rules
from detectors.provider_wide import MODULES as PROVIDER_WIDE
from detectors.provider_wide import rules as provider_rules

RULES_DIR = Path(rules.__file__).parent
PROVIDER_RULES_DIR = Path(provider_rules.__file__).parent
#: (package, module) of every rule of both kinds
EVERY_RULE = [("detectors.rules", m) for m in MODULES] + [
    ("detectors.provider_wide.rules", m) for m in PROVIDER_WIDE
]
#: Needs a trained model, so its cases are in tests/ml instead of a fixture.
WITHOUT_FIXTURE = {"behaviour_anomaly"}


def _layout(folder: Path) -> set[str]:
    """The folder's files, less caches and the optional mypyc build's extension modules
    (tools/compile_detectors.py: git-ignored, each beside its `.py`)."""
    return {
        p.name
        for p in folder.iterdir()
        if p.name != "__pycache__" and not p.name.endswith(tuple(EXTENSION_SUFFIXES))
    }


def _tree(package: str, name: str) -> ast.Module:
    folder = RULES_DIR if package == "detectors.rules" else PROVIDER_RULES_DIR
    return ast.parse((folder / f"{name}.py").read_text())


def test_files_are_the_detector_ids_and_their_fixtures() -> None:
    files = _layout(RULES_DIR)
    expected = {"__init__.py"} | {f"{m}.py" for m in MODULES}
    expected |= {f"{m}.json" for m in MODULES if m not in WITHOUT_FIXTURE}
    assert files == expected
    provider_files = _layout(PROVIDER_RULES_DIR)
    assert provider_files == {"__init__.py"} | {
        f"{m}{ext}" for m in PROVIDER_WIDE for ext in (".py", ".json")
    }
    assert len(PROVIDER_WIDE) >= 5 and not set(PROVIDER_WIDE) & set(MODULES)


@pytest.mark.parametrize(("package", "name"), EVERY_RULE)
def test_module_name_is_its_detector_id(package: str, name: str) -> None:
    module = importlib.import_module(f"{package}.{name}")
    assert name == module.DETECTOR
    if name not in WITHOUT_FIXTURE:
        folder = RULES_DIR if package == "detectors.rules" else PROVIDER_RULES_DIR
        assert orjson.loads((folder / f"{name}.json").read_bytes())["detector"] == name


@pytest.mark.parametrize(("package", "name"), EVERY_RULE)
def test_detect_is_the_only_public_function(package: str, name: str) -> None:
    module = importlib.import_module(f"{package}.{name}")
    public = {
        n
        for n, value in vars(module).items()
        # isroutine: a rule compiled by the optional mypyc build has builtin functions
        if inspect.isroutine(value)
        and getattr(value, "__module__", None) == module.__name__
        and not n.startswith("_")
    }
    assert public == {"detect"}


@pytest.mark.parametrize(("package", "name"), EVERY_RULE)
def test_no_rule_imports_another_or_builds_findings_by_hand(package: str, name: str) -> None:
    for node in ast.walk(_tree(package, name)):
        if isinstance(node, ast.ImportFrom):
            imported = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        else:
            imported = []
        assert not [
            i for i in imported if i.startswith(("detectors.rules", "detectors.provider_wide"))
        ], name
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "Finding", f"{name}: build findings with ctx.finding"


def test_rules_stay_small() -> None:
    lines = sorted(len((RULES_DIR / f"{m}.py").read_text().splitlines()) for m in MODULES)
    assert lines[-1] <= 400
    assert (lines[len(lines) // 2 - 1] + lines[len(lines) // 2]) / 2 <= 80
    assert (
        max(len((PROVIDER_RULES_DIR / f"{m}.py").read_text().splitlines()) for m in PROVIDER_WIDE)
        <= 400
    )
