"""Mutation check of the detectors' thresholds: does moving one by one step fail a test?

Every number in `DetectionConfig` (pipeline/detection_config.py) is a threshold or a window the
detectors read. For each one, one at a time, this script makes a mutant in a scratch copy of the
repository and runs the detector tests (tests/detectors) against it:

- the default moved one step down and one step up (1 for an int; `--float-step`, 1% by default,
  of the value for a float);
- every strict/non-strict comparison in detectors/ that reads the threshold flipped (`<` and
  `<=`, `>` and `>=`): a comparison reads it when one of its sides mentions `<...>.<field>`, or a
  local name or parameter computed from it, or calls a function of the same module that does
  (found with `ast`, to a fixed point within each module).

A mutant is killed when at least one test fails (tests marked integration, server or slow are
left out: they start servers, and pinning thresholds is the pure tests' job). The table printed
(markdown) has one row per mutant, and a summary per threshold; the exit status is 1 when any
mutant survives (the threshold is not pinned by a test just under and just over it), 2 when the
unmutated copy already fails. `make mutation` runs it.

    python -m tests.mutation.threshold_mutation [--only FIELD ...] [--tests PATH ...] [--jobs N]
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILE = Path("pipeline/detection_config.py")
DETECTOR_DIR = Path("detectors")
FLIP = {
    ast.Lt: (ast.LtE, "<", "<="),
    ast.LtE: (ast.Lt, "<=", "<"),
    ast.Gt: (ast.GtE, ">", ">="),
    ast.GtE: (ast.Gt, ">=", ">"),
}


@dataclass(frozen=True)
class Mutant:
    threshold: str
    label: str  # what changed, for the table
    file: Path  # relative to the repository
    old: str  # the exact text replaced ...
    new: str  # ... by this
    start: int  # character offset of `old` in the file


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    detail: str  # the first failing test, or why it survived
    seconds: float


def thresholds() -> dict[str, int | float]:
    """The numeric fields of DetectionConfig and their defaults (read from the source as written)."""
    sys.path.insert(0, str(ROOT))
    from pipeline.detection_config import DetectionConfig

    out: dict[str, int | float] = {}
    for name, info in DetectionConfig.model_fields.items():
        if info.annotation in (int, float):
            out[name] = info.default
    return out


def _offsets(text: str) -> list[int]:
    """Character offset of the start of each line (1-based lines: index 0 unused)."""
    starts = [0, 0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def value_mutants(fields: dict[str, int | float], float_step: float) -> Iterator[Mutant]:
    text = (ROOT / CONFIG_FILE).read_text()
    for name, value in fields.items():
        match = re.search(rf"^\s+{name}: (int|float) = setting\((?P<v>[^,]+),", text, re.M)
        if match is None:
            raise SystemExit(f"cannot find the default of {name} in {CONFIG_FILE}")
        old = match.group("v")
        if isinstance(value, int) and not isinstance(value, bool) and match.group(1) == "int":
            moves = [("-1", value - 1), ("+1", value + 1)]
        else:
            moves = [
                (f"-{float_step:.0%}", value * (1 - float_step)),
                (f"+{float_step:.0%}", value * (1 + float_step)),
            ]
        for step, moved in moves:
            shown = repr(round(moved, 6)) if isinstance(moved, float) else str(moved)
            yield Mutant(
                name,
                f"default {old} -> {shown} ({step})",
                CONFIG_FILE,
                old,
                shown,
                match.start("v"),
            )


#: Calls an arithmetic value flows through (a threshold passed through `max(1, ...)` is still it).
ARITHMETIC_CALLS = frozenset(
    {"max", "min", "int", "float", "abs", "round", "Decimal", "str", "timedelta"}
)


def _mentions(
    node: ast.AST, fields: set[str], tainted: set[str], calls: set[str], functions: Collection[str]
) -> set[str]:
    """The thresholds an expression computes with: `x.<field>`, a name computed from one, a call
    of a same-module function whose result is computed from one, through arithmetic and
    comparisons. Containers, comprehensions and other calls stop the search: a dict filtered by a
    window is not the window."""
    found: set[str] = set()
    if isinstance(node, ast.Attribute) and node.attr in fields and isinstance(node.ctx, ast.Load):
        return {node.attr}
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return {t.split(":", 1)[1] for t in tainted if t.split(":", 1)[0] == node.id}
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in ARITHMETIC_CALLS:
            for arg in node.args:
                found |= _mentions(arg, fields, tainted, calls, functions)
        elif isinstance(node.func, ast.Name) and node.func.id in functions:
            found |= {c.split(":", 1)[1] for c in calls if c.split(":", 1)[0] == node.func.id}
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                found |= _mentions(arg, fields, tainted, calls, functions)
        return found
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
        parts = [node.elt, *(g.iter for g in node.generators)]
    elif isinstance(
        node,
        (
            ast.BinOp,
            ast.UnaryOp,
            ast.BoolOp,
            ast.Compare,
            ast.IfExp,
            ast.Subscript,
            ast.List,
            ast.Tuple,
        ),
    ):
        parts = list(ast.iter_child_nodes(node))
    else:
        parts = []
    for child in parts:
        found |= _mentions(child, fields, tainted, calls, functions)
    return found


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def comparison_mutants(fields: set[str]) -> Iterator[Mutant]:
    for path in sorted((ROOT / DETECTOR_DIR).rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        functions = _functions(tree)
        # name:threshold pairs, per function; functions whose result reads a threshold
        tainted: dict[str, set[str]] = {name: set() for name in functions}
        calls: set[str] = set()
        changed = True
        while changed:
            changed = False
            for fname, fn in functions.items():
                mine = tainted[fname]
                for node in ast.walk(fn):
                    targets: list[ast.expr] = []
                    value: ast.expr | None = None
                    if isinstance(node, ast.Assign):
                        targets, value = node.targets, node.value
                    elif (
                        isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None
                    ):
                        targets, value = [node.target], node.value
                    if value is not None:
                        for t in _mentions(value, fields, mine, calls, functions):
                            for target in targets:
                                names = (
                                    [target]
                                    if isinstance(target, ast.Name)
                                    else getattr(target, "elts", [])
                                )
                                for name in (n.id for n in names if isinstance(n, ast.Name)):
                                    if f"{name}:{t}" not in mine:
                                        mine.add(f"{name}:{t}")
                                        changed = True
                    if isinstance(node, ast.Return) and node.value is not None:
                        for t in _mentions(node.value, fields, mine, calls, functions):
                            if f"{fname}:{t}" not in calls:
                                calls.add(f"{fname}:{t}")
                                changed = True
                    # an argument that reads a threshold taints the callee's parameter
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Name)
                        and node.func.id in functions
                    ):
                        params = [a.arg for a in functions[node.func.id].args.args]
                        for param, arg in zip(params, node.args, strict=False):
                            for t in _mentions(arg, fields, mine, calls, functions):
                                if f"{param}:{t}" not in tainted[node.func.id]:
                                    tainted[node.func.id].add(f"{param}:{t}")
                                    changed = True
        starts = _offsets(text)
        rel = path.relative_to(ROOT)
        for fname, fn in functions.items():
            for node in ast.walk(fn):
                if (
                    not isinstance(node, ast.Compare)
                    or len(node.ops) != 1
                    or type(node.ops[0]) not in FLIP
                ):
                    continue
                reads = _mentions(node, fields, tainted[fname], calls, functions)
                if not reads:
                    continue
                left, right = node.left, node.comparators[0]
                lo = starts[left.end_lineno or 0] + (left.end_col_offset or 0)
                hi = starts[right.lineno] + right.col_offset
                between = text[lo:hi]
                _, old, new = FLIP[type(node.ops[0])]
                at = between.index(old)
                source = ast.get_source_segment(text, node) or ""
                for threshold in sorted(reads):
                    yield Mutant(
                        threshold,
                        f"{rel}:{node.lineno} `{source}`: `{old}` -> `{new}`",
                        rel,
                        old,
                        new,
                        lo + at,
                    )


def _tracked_files() -> list[str]:
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    return [f for f in listed if f and (ROOT / f).is_file() and not (ROOT / f).is_symlink()]


def scratch_copy(base: Path) -> Path:
    """The repository's files (tracked and new, not ignored ones) under `base/repo`."""
    dest = base / "repo"
    for rel in _tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


#: The detectors' own tests, without a broker or a worker (those start servers: slow, and their
#: thresholds are the pure tests' business).
MARKERS = "not integration and not server and not slow"


def run_tests(repo: Path, tests: list[str], timeout: float) -> tuple[bool, str]:
    """(passed, the first failing test or the tail of the output)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("PW_DETECT_")}
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                "-m",
                MARKERS,
                *tests,
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if proc.returncode == 0:
        return True, ""
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M) or re.findall(
        r"^ERROR (\S+)", proc.stdout, re.M
    )
    return False, failed[0] if failed else proc.stdout.strip().splitlines()[-1:][
        0
    ] if proc.stdout.strip() else proc.stderr[-300:]


def check(mutant: Mutant, base: Path, tests: list[str], timeout: float) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(base / "repo", repo)
        target = repo / mutant.file
        text = target.read_text()
        assert text[mutant.start : mutant.start + len(mutant.old)] == mutant.old, mutant
        target.write_text(
            text[: mutant.start] + mutant.new + text[mutant.start + len(mutant.old) :]
        )
        passed, detail = run_tests(repo, tests, timeout)
    return Outcome(
        mutant,
        not passed,
        detail if not passed else "every test passed",
        time.monotonic() - started,
    )


def _result(o: Outcome) -> tuple[bool, str, float]:
    return o.killed, o.detail, o.seconds


def table(outcomes: Iterable[Outcome], defaults: dict[str, int | float]) -> str:
    rows = ["| threshold | default | mutant | result |", "|---|---|---|---|"]
    by: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by.setdefault(o.mutant.threshold, []).append(o)
    for name in defaults:
        for o in by.get(name, []):
            result = f"killed by `{o.detail}`" if o.killed else f"**SURVIVED** ({o.detail})"
            rows.append(f"| `{name}` | {defaults[name]} | {o.mutant.label} | {result} |")
    rows += ["", "| threshold | mutants | killed | pinned |", "|---|---|---|---|"]
    for name in defaults:
        mine = by.get(name, [])
        killed = sum(o.killed for o in mine)
        rows.append(
            f"| `{name}` | {len(mine)} | {killed} | {'yes' if mine and killed == len(mine) else '**NO**'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="*", default=None, help="thresholds to mutate (default: all)"
    )
    parser.add_argument(
        "--tests",
        nargs="*",
        default=["tests/detectors/test_thresholds.py", "tests/detectors"],
        help="what pytest runs per mutant (stopping at the first failure)",
    )
    parser.add_argument(
        "--float-step", type=float, default=0.01, help="relative step for float thresholds"
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)

    defaults = thresholds()
    if args.only:
        unknown = set(args.only) - set(defaults)
        if unknown:
            parser.error(f"not a threshold: {', '.join(sorted(unknown))}")
        defaults = {k: v for k, v in defaults.items() if k in args.only}
    mutants = [*value_mutants(defaults, args.float_step), *comparison_mutants(set(defaults))]
    mutants.sort(key=lambda m: list(defaults).index(m.threshold))
    if args.list:
        for m in mutants:
            print(f"{m.threshold}: {m.label}")
        return 0
    missing = [
        name
        for name in defaults
        if not any(m.threshold == name and m.file != CONFIG_FILE for m in mutants)
    ]
    print(
        f"{len(mutants)} mutants of {len(defaults)} thresholds; no comparison found for: {', '.join(missing) or 'none'}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="pw-mutation-") as tmp:
        base = Path(tmp)
        scratch_copy(base)
        passed, detail = run_tests(base / "repo", args.tests, args.timeout)
        if not passed:
            print(f"the unmutated copy fails already: {detail}", file=sys.stderr)
            return 2
        # one comparison may read several thresholds: test each textual change once
        unique = list({(m.file, m.start, m.new): m for m in mutants}.values())
        done: dict[tuple[Path, int, str], Outcome] = {}
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for o in pool.map(lambda m: check(m, base, args.tests, args.timeout), unique):
                done[(o.mutant.file, o.mutant.start, o.mutant.new)] = o
                state = "killed" if o.killed else "SURVIVED"
                print(f"{state:8} {o.seconds:6.1f}s  {o.mutant.label}  {o.detail}", file=sys.stderr)
        outcomes = [Outcome(m, *_result(done[(m.file, m.start, m.new)])) for m in mutants]
    report = table(outcomes, defaults)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return 1 if any(not o.killed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
