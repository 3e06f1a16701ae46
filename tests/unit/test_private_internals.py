"""Private attributes of Faust, aiokafka, scikit-learn and prometheus_client are used in one module
per dependency area, and each of those refuses to import with a version it was not tested with."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT
from pipeline.dependency_pins import require_tested

INTERNALS = {
    "streams/faust_internals.py": "streams.faust_internals",
    "detectors/behaviour/sklearn_internals.py": "detectors.behaviour.sklearn_internals",
    "sinks/metrics_internals.py": "sinks.metrics_internals",
}
PRODUCT = ["partnerwatch", "pipeline", "streams", "sources", "sinks", "detectors"]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def pins() -> dict[str, str]:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {
        m.group(1).lower(): m.group(2)
        for d in deps
        if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", d))
    }


@pytest.mark.skipif(RUFF is None, reason="ruff (a dev dependency) is not installed")
def test_private_attributes_are_read_only_in_the_internals_modules() -> None:
    assert RUFF
    done = subprocess.run(
        [RUFF, "check", "--isolated", "--select", "SLF001", "--output-format", "json", *PRODUCT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    hits = json.loads(done.stdout)
    files = {hit["filename"].removeprefix(str(REPO_ROOT) + "/") for hit in hits}
    assert files == set(INTERNALS), (
        f"private attributes used outside the internals modules: {files - set(INTERNALS)}"
    )
    # and the project's ruff configuration allows that only there
    configured = subprocess.run(
        [RUFF, "check", "--select", "SLF001", *PRODUCT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert configured.returncode == 0, configured.stdout


@pytest.mark.parametrize("module", sorted(INTERNALS.values()))
def test_each_internals_module_is_checked_against_the_pinned_versions(module: str) -> None:
    tested = __import__(module, fromlist=["TESTED"]).TESTED
    pinned = pins()
    assert tested, module
    for package, version in tested.items():
        assert pinned.get(package.lower()) == version, (
            f"pyproject.toml pins {package}=={pinned.get(package.lower())}, {module} was tested with {version}"
        )


def test_a_different_version_fails_loudly() -> None:
    with pytest.raises(RuntimeError) as caught:
        require_tested({"aiokafka": "0.0.1"}, "streams.faust_internals")
    message = str(caught.value)
    assert "aiokafka==0.0.1" in message and "aiokafka==0.14.0 is installed" in message
    assert "streams.faust_internals" in message
    with pytest.raises(RuntimeError, match="no-such-package==none is installed"):
        require_tested({"no-such-package": "1.0"}, "x")


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("streams.faust_internals", "faust-streaming"),
        ("detectors.behaviour.sklearn_internals", "scikit-learn"),
        ("sinks.metrics_internals", "prometheus-client"),
    ],
)
def test_importing_with_another_installed_version_raises(module: str, package: str) -> None:
    """The module itself, imported in a fresh interpreter where the package reports another version."""
    code = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        f"m.version = lambda name: '99.0' if name == {package!r} else real(name)\n"
        f"import {module}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError:") and f"{package}==99.0 is installed" in last, done.stderr
