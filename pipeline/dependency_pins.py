"""The version check of the modules that reach into a dependency's private attributes.

streams/faust_internals.py (Faust, aiokafka), detectors/behaviour/sklearn_internals.py
(scikit-learn) and sinks/metrics_internals.py (prometheus_client) each name the versions they were
tested with and call `require_tested` when imported: a different installed version stops the
process at once with the package and both versions named, instead of misbehaving later.
pyproject.toml pins the same versions (tests/unit/test_private_internals.py checks they agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version


def require_tested(tested: Mapping[str, str], module: str) -> None:
    """Raise RuntimeError unless every package of `tested` is installed at exactly its version."""
    for package, wanted in tested.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "none"
        if installed != wanted:
            raise RuntimeError(
                f"{module} uses private internals of {package}, tested with {package}=={wanted}, "
                f"but {package}=={installed} is installed: install {package}=={wanted} (the pin in "
                f"pyproject.toml), or re-check {module} against {installed} and update its TESTED versions"
            )
