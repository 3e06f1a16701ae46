"""Kafka's record CRC-32C in aiokafka, by the processor's `crc32` instruction.

Every record batch a Kafka client produces carries a CRC-32C of its records, and aiokafka checks
it on every batch it fetches. Its compiled record code does both with the C file it vendors from
librdkafka (`aiokafka/record/_crecords/crc32c.c`), which uses the SSE 4.2 `crc32` instruction
(chosen at run time by CPUID; the table-driven software version on a processor without it) only
when compiled with `WITH_CRC32C_HW`. aiokafka's build does not set it, so its wheels on PyPI
compute the CRC in software: 0.49-0.56 ms per MiB on the benchmark machine, against 0.034-0.043
with the instruction. In a worker that is every ledger record produced and every action and
ledger record fetched, partly on threads that hold the interpreter lock (docs/performance.md,
"Kafka's CRC-32C").

`make install` runs `build`: on x86-64 it rebuilds the installed aiokafka release (the version
pyproject.toml pins) from its source distribution with `WITH_CRC32C_HW`, the same source and the
same results. That downloads the source and pip's build requirements (setuptools, Cython) from
the package index and needs a C compiler and zlib's headers. Anywhere else, when pip is told to
take wheels only (`PIP_ONLY_BINARY`), when the build fails, or when what it built is not the
hardware CRC or disagrees with aiokafka's pure-Python CRC-32C, aiokafka's wheel is what stays
installed, and this says so; the install goes on either way. Nothing depends on it: the tests and
the pipeline run the same on either.

    python -m tools.kafka_crc build     # make install
    python -m tools.kafka_crc status    # hardware or software, and the speed measured

Which CRC runs is told by its speed (`SOFTWARE_ABOVE_MS`): aiokafka says nothing about it. `status`
exits 1 when the CRC is not the hardware one or does not agree with aiokafka's own pure-Python
CRC-32C. The benchmarks record `mode()` beside their figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

#: the checkout (this module's imports in a new interpreter)
ROOT = Path(__file__).resolve().parents[1]

#: ms per MiB above which the CRC counts as software (software 0.49-0.56 here; the instruction
#: 0.034-0.043: a table-driven CRC would have to be 3-4x faster than aiokafka's to pass)
SOFTWARE_ABOVE_MS = 0.15
#: the flag that turns on the vendored crc32c.c's hardware path
FLAG = "-DWITH_CRC32C_HW=1"
#: where `crc32` exists (x86-64; the C file's hardware path is x86 assembly)
MACHINES = ("x86_64", "amd64")
#: seconds a pip run may take (a download and a build of about 15 s here)
PIP_SECONDS = 600


def _crc() -> Callable[[bytes | memoryview], int]:
    """aiokafka's compiled CRC-32C (a private module of aiokafka 0.14: the one place read here)."""
    from aiokafka.record._crecords.cutil import crc32c_cython

    return crc32c_cython


def ms_per_mib(repeat: int = 5) -> float:
    """The fastest of `repeat` CRC-32C computations over 1 MiB by aiokafka's compiled code, in ms."""
    crc = _crc()
    data = os.urandom(1 << 20)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        crc(data)
        best = min(best, time.perf_counter() - started)
    return best * 1e3


#: lengths across the hardware path's 8-byte steps and the edges of its three-stream blocks
#: (3 x 256 and 3 x 8,192 bytes), where its loops hand over to one another
SIZES = (*range(0, 70), 255, 256, 257, 767, 768, 769, 1023, 4096, 24_575, 24_576, 24_577, 65_537)


def agrees() -> bool:
    """aiokafka's compiled CRC-32C equals its pure-Python one (and the standard check value) on
    `SIZES`, each from every offset 0-7 of a buffer (the record code hashes from 21 bytes into a
    batch: the hardware path's lead-in for unaligned memory runs there)."""
    from aiokafka.record import _crc32c

    crc = _crc()
    if crc(b"123456789") != 0xE3069283:
        return False
    for size in SIZES:
        content = os.urandom(size)
        want = _crc32c.crc(content)
        for offset in range(8):
            held = bytes(offset) + content + bytes(8 - offset)
            if crc(memoryview(held)[offset : offset + size]) != want:
                return False
    return True


def _mode_of(ms: float) -> str:
    return "software" if ms > SOFTWARE_ABOVE_MS else "hardware"


def mode() -> str:
    """ "hardware" or "software": how this process's aiokafka computes Kafka's CRC-32C."""
    return _mode_of(ms_per_mib())


def state() -> str:
    """`mode()` and whether the CRC agrees, in one line: "hardware agrees", "software disagrees"."""
    return f"{mode()} {'agrees' if agrees() else 'disagrees'}"


def _fresh() -> str:
    """`state()` asked in a new interpreter: the one running this has the aiokafka it imported
    before a rebuild."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tools.kafka_crc import state; print(state())"
    try:
        out = subprocess.run(  # noqa: S603 (this interpreter, this module's own function)
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=PIP_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return "unknown (timed out)"
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-300:]})"


#: what `_fresh` says of a build to keep: the hardware CRC, agreeing
GOOD = "hardware agrees"


def _pip(version: str, source: bool) -> int:
    """Reinstall aiokafka `version`: from its source with `FLAG`, or its wheel. pip's exit code."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall"]
    env = dict(os.environ)
    if source:
        # --no-cache-dir: pip's cache of wheels built from source does not key on CFLAGS
        cmd += ["--no-cache-dir", "--no-binary", "aiokafka"]
        env["CFLAGS"] = f"{env.get('CFLAGS', '')} {FLAG}".strip()
    else:
        cmd += ["--only-binary", "aiokafka"]
    cmd.append(f"aiokafka=={version}")
    try:
        return subprocess.run(cmd, env=env, check=False, timeout=PIP_SECONDS).returncode  # noqa: S603 (pip, a pinned release)
    except subprocess.TimeoutExpired:
        return -1


def _wheels_only() -> bool:
    """The operator told pip to take wheels only (for aiokafka or everything)."""
    only = os.environ.get("PIP_ONLY_BINARY", "")
    return any(name.strip().lower() in (":all:", "aiokafka") for name in only.split(","))


def build() -> int:
    """Rebuild the installed aiokafka from its source with the hardware CRC (x86-64); the wheel
    is what stays when that cannot be done. Returns 0 unless aiokafka is missing."""
    try:
        version = metadata.version("aiokafka")
    except metadata.PackageNotFoundError:
        print("kafka_crc: aiokafka is not installed", file=sys.stderr)
        return 1
    machine = platform.machine().lower()
    if machine not in MACHINES:
        print(f"kafka_crc: {machine}: no crc32 instruction to build for; aiokafka's wheel stays")
        return 0
    if _wheels_only():
        print("kafka_crc: PIP_ONLY_BINARY asks for wheels only; aiokafka's wheel stays")
        return 0
    if _fresh() == GOOD:
        print(f"kafka_crc: aiokafka {version} already computes CRC-32C in hardware")
        return 0
    print(f"kafka_crc: building aiokafka {version} from source with {FLAG}", flush=True)
    built = _pip(version, source=True)
    now = _fresh()
    if built == 0 and now == GOOD:
        print(f"kafka_crc: aiokafka {version} now computes CRC-32C in hardware")
        return 0
    # pip keeps what was installed when a build fails; when it installed something that is not
    # the hardware CRC, or one that disagrees, the wheel goes back
    back = "kept the installed aiokafka" if built != 0 else "reinstalling the wheel"
    print(
        f"kafka_crc: WARNING: no hardware CRC-32C (pip exit {built}, now {now}): {back};"
        " aiokafka computes it in software",
        file=sys.stderr,
    )
    if built == 0 and _pip(version, source=False) != 0:
        print(
            "kafka_crc: WARNING: the wheel could not be reinstalled: run"
            f" `pip install --force-reinstall --only-binary aiokafka aiokafka=={version}`",
            file=sys.stderr,
        )
    return 0


def status() -> int:
    speed, ok = ms_per_mib(), agrees()
    print(
        f"aiokafka {metadata.version('aiokafka')}: CRC-32C in"
        f" {_mode_of(speed)}, {speed:.3f} ms per MiB;"
        f" {'agrees' if ok else 'DISAGREES'} with aiokafka's pure-Python CRC-32C"
    )
    return 0 if ok and _mode_of(speed) == "hardware" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=("build", "status"))
    args = parser.parse_args(argv)
    return build() if args.command == "build" else status()


if __name__ == "__main__":
    raise SystemExit(main())
