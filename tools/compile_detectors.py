"""Optional: compile the per-event code (detection, the ingest path's validation, masking and
sequencing, and the ingest service's loops over a batch) with mypyc, in place, beside the sources.

The extension modules (`<module>.cpython-*.so` in detectors/, pipeline/ and streams/, plus one shared
library per package, `<package>/_mypyc__mypyc.*.so`) sit next to the `.py` files they are built from;
Python's import system prefers an extension module to a source file of the same name, so once
built every process started from the checkout runs the compiled detectors, and once removed
(`clean`) the pure-Python ones again. Nothing of the package build or install depends on this:
`pip install -e .`, CI and the wheel use the `.py` files, and the `.so` files are git-ignored.

    python -m tools.compile_detectors build    # make compile
    python -m tools.compile_detectors clean    # make clean-compiled
    python -m tools.compile_detectors status   # what is compiled, and what is stale

`pure_python()` makes the current process import the pure-Python modules even where the
compiled ones are built (the parity test's subprocess, `bench.ingest_stages --pure-detectors`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
#: The packages the compiled modules belong to (no other extension module lives in them), and
#: mypyc's groups: one shared library each, `<package>/_mypyc__mypyc.<suffix>`, inside the package
#: it serves (not at the checkout's root), so that an editable install's import finder, which
#: maps our packages and nothing else, finds it from any working directory. One group per package,
#: so that importing a compiled pipeline module never imports the detectors package.
PACKAGES = ("pipeline", "detectors", "streams")
#: What one event goes through in the ingest service (streams/ingest_batch.py: validation,
#: masking, sequencing, and `detectors.run.apply_event`) and in the provider stage's
#: `detectors.provider_wide.run.Stage`, relative to ROOT, rules aside.
#: The packages' `__init__.py` stay Python: import-linter and grimp (the import-cycle test) read
#: a package from its `__init__.py`, and `detectors/__init__.py` only discovers the rules (with
#: pkgutil, which finds a compiled rule as it finds a source one); `Context`, used by every rule,
#: lives in detectors/context.py so that it is compiled.
COMPILED = (
    "detectors/context.py",
    "detectors/run.py",
    "detectors/windows.py",
    "detectors/grants.py",
    "detectors/networks.py",
    "detectors/known_networks.py",
    "detectors/rates.py",
    "detectors/prices.py",
    "detectors/reconciliation.py",
    "detectors/reports.py",
    "detectors/responses.py",
    "detectors/geo.py",
    "detectors/behaviour/features.py",
    "detectors/behaviour/day_features.py",
    "detectors/behaviour/account_features.py",
    "detectors/behaviour/scoring.py",
    # the provider-wide stage's core (streams/provider_stage.py folds every ledger event through
    # it); its rules are added by `sources()`, and `detectors/provider_wide/__init__.py` (rule
    # discovery, `provider_of`) stays Python like the other packages' `__init__.py`
    "detectors/provider_wide/run.py",
    # the core contract's parts every event's detection calls: findings and alert folding,
    # grant coverage and allowlists, action patterns
    "pipeline/alert.py",
    "pipeline/authorization.py",
    "pipeline/contract.py",
    # the memo the per-event lookups keep their results in (a native class: a hit is a method
    # call and a dict lookup)
    "pipeline/memo.py",
    # the floors the per-event sweeps of open alerts and idle rate records skip by (a native
    # class, as the memo)
    "pipeline/floors.py",
    # the ingest service's per-event work besides detection (streams/ingest_batch.py
    # `Ingest.decode` / `finish`): validation and what it calls, masking, time handling and the
    # canonical encoding, dedup and sequencing. Left as Python: pipeline/action_structs.py (the
    # msgspec structs: msgspec builds its decoder from a Struct's annotations, which do not
    # read back from a compiled class, so every message failed to decode and went the slow
    # way), pipeline/id_filter.py (numpy does the work, once per batch), and what only rare
    # events reach (grant_schema, origin, deadletter: grants, approvals, policies, rejects)
    "pipeline/action_decoder.py",
    "pipeline/event.py",
    "pipeline/rejection.py",
    "pipeline/identifiers.py",
    "pipeline/marketplaces.py",
    "pipeline/sensitive.py",
    "pipeline/masking.py",
    "pipeline/ledger.py",
    "pipeline/dedup_window.py",
    # the ingest service's own loops over a batch's records and events (`Ingest.decode`,
    # `finish_in_steps`, `_detect`): the rest of streams/ stays Python (Faust, Kafka, asyncio)
    "streams/ingest_batch.py",
)
#: Rules left out: none so far (a rule mypyc cannot compile is named here with the reason).
SKIPPED_RULES: dict[str, str] = {}
BUILD_DIR = ROOT / "build" / "mypyc"


#: The folders of rule modules (one per detector id): the account rules and the provider-wide ones.
RULE_FOLDERS = ("detectors/rules", "detectors/provider_wide/rules")


def sources() -> list[str]:
    """The files to compile: COMPILED and every rule module but SKIPPED_RULES."""
    rules = sorted(
        p.relative_to(ROOT).as_posix()
        for folder in RULE_FOLDERS
        for p in (ROOT / folder).glob("*.py")
        if not p.name.startswith("_") and p.stem not in SKIPPED_RULES
    )
    return [*COMPILED, *rules]


def modules() -> list[str]:
    """The dotted names of `sources()`."""
    return [path.removesuffix(".py").replace("/", ".") for path in sources()]


def built() -> list[Path]:
    """The extension modules of this build present in the checkout (beside the sources, and
    each package's group library)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = [
        p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*")
        if p.name.endswith(suffixes) and p.is_file()
    ]
    return sorted(found)


def stale() -> list[str]:
    """Where a build is present: the sources newer than their extension module, or without one
    (a stale `.so` shadows the edited `.py`). Empty without a build."""
    if not built():
        return []
    out = []
    for source in sources():
        path = ROOT / source
        compiled = [
            path.with_name(path.stem + suffix)
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if path.with_name(path.stem + suffix).exists()
        ]
        if not compiled or path.stat().st_mtime > max(c.stat().st_mtime for c in compiled):
            out.append(source)
    return out


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` was loaded from an extension module (a mypyc build), not a `.py`."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def loaded() -> dict[str, list[str]]:
    """The modules of this build the current process has imported, compiled and not."""
    modules_ = [sys.modules[n] for n in modules() if n in sys.modules]
    return {
        "compiled": [m.__name__ for m in modules_ if is_compiled(m)],
        "python": [m.__name__ for m in modules_ if not is_compiled(m)],
    }


#: Added to mypyc's own flags (`-O3`, with CPython's): calls between the functions of one
#: group's library may be bound and inlined (it exports them to no one else), and calls into
#: libpython go through the GOT without the PLT's jump. 2.3 % fewer instructions over the
#: ingest stages (callgrind; docs/performance.md, "Compiler flags for the compiled modules").
#: Portable: no `-march`, since an instruction set the build machine has and another lacks
#: would stop the worker there (valgrind, for one, cannot run AVX-512).
EXTRA_CFLAGS = ("-fno-semantic-interposition", "-fno-plt") if sys.platform == "linux" else ()


def build(verbose: bool = False) -> list[Path]:
    """Compile `sources()` in place (mypy then C); returns the extension modules written."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    clean()
    os.chdir(ROOT)  # mypyc names modules by their paths relative to the working directory
    files = sources()
    extensions = mypycify(
        files,
        opt_level="3",
        separate=[
            ([f for f in files if f.startswith(f"{package}/")], f"{package}._mypyc")
            for package in PACKAGES
        ],
        target_dir=str(BUILD_DIR / "c"),
        verbose=verbose,
    )
    for extension in extensions:
        extension.extra_compile_args = [*extension.extra_compile_args, *EXTRA_CFLAGS]
    # A bare Distribution, not `setup()`: that would read the project's pyproject.toml, and this
    # build is no part of the package's.
    dist = Distribution({"name": "partnerwatch-compiled-detectors", "ext_modules": extensions})
    dist.script_args = ["-q", "build_ext", "--inplace", "--build-temp", str(BUILD_DIR / "temp")]
    dist.script_args += ["--build-lib", str(BUILD_DIR / "lib")]
    dist.parse_command_line()
    dist.run_commands()
    return built()


def clean() -> list[Path]:
    """Remove the compiled modules (and the build directory); returns what was removed."""
    removed = built()
    for path in removed:
        path.unlink()
    if BUILD_DIR.exists():
        import shutil

        shutil.rmtree(BUILD_DIR)
    if BUILD_DIR.parent.is_dir() and not any(BUILD_DIR.parent.iterdir()):
        BUILD_DIR.parent.rmdir()  # build/, when this build was all it held
    return removed


class _SourceOnly(importlib.abc.MetaPathFinder):
    """Finds the modules of this build as `.py` files only, never as extension modules."""

    def __init__(self) -> None:
        self.names = frozenset(modules())

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for entry in path if path is not None else sys.path:
            finder = importlib.machinery.FileFinder(
                entry or ".",
                (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
            )
            spec = finder.find_spec(fullname)
            if spec is not None:
                return spec
        return None


def pure_python() -> None:
    """Import the pure-Python modules of this build in this process, compiled ones built or
    not; call it before any of them is imported."""
    early = sorted(set(modules()) & set(sys.modules))
    if early:
        raise RuntimeError(f"imported already: {early}; call pure_python() first")
    sys.meta_path.insert(0, _SourceOnly())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "status"
    if command == "build":
        paths = build(verbose="-v" in args)
        print(f"compiled {len(sources())} modules into {len(paths)} extension files")
    elif command == "clean":
        print(f"removed {len(clean())} compiled files")
    elif command == "status":
        paths = built()
        print(f"{len(paths)} compiled files" if paths else "pure Python (nothing compiled)")
        for path in paths:
            print(" ", path.relative_to(ROOT))
        for source in stale():
            print("stale (rebuild or clean):", source)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
