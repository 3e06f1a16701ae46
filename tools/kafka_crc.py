"""Kafka's record CRC-32C in aiokafka, by the processor's `crc32` instruction.

Every record batch a Kafka client produces carries a CRC-32C of its records, and aiokafka checks
it on every batch it fetches. Its compiled record code does both with the C file it vendors from
librdkafka (`aiokafka/record/_crecords/crc32c.c`), which uses the SSE 4.2 `crc32` instruction
(chosen at run time by CPUID; the table-driven software version on a processor without it) only
when compiled with `WITH_CRC32C_HW`. aiokafka's build does not set it, so its wheels on PyPI
compute the CRC in software: 0.51-0.56 ms per MiB on the benchmark machine, against 0.035-0.043
with the instruction. In a worker that is every ledger record produced and every action and
ledger record fetched, on threads that hold the interpreter lock (docs/performance.md, "Kafka's
CRC-32C").

`make install` runs `build`: on x86-64 it rebuilds the installed aiokafka release (the version
pyproject.toml pins) from its source distribution with `WITH_CRC32C_HW`, the same source and the
same results; anywhere else, or when the build fails (no C compiler, no network), the wheel stays
and this says so. Nothing depends on it: the tests and the pipeline run the same on either.

    python -m tools.kafka_crc build     # make install
    python -m tools.kafka_crc status    # hardware or software, and the speed measured

`status` exits 1 when the CRC is not the hardware one or does not agree with aiokafka's own
pure-Python CRC-32C. The benchmarks record `mode()` beside their figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

#: the checkout (this module's imports in a new interpreter)
ROOT = Path(__file__).resolve().parents[1]

#: ms per MiB above which the CRC counts as software (software 0.51-0.56 here; the instruction
#: 0.035-0.043: a table-driven CRC would have to be 3-4x faster than aiokafka's to pass)
SOFTWARE_ABOVE_MS = 0.15
#: the flag that turns on the vendored crc32c.c's hardware path
FLAG = "-DWITH_CRC32C_HW=1"
#: where `crc32` exists (x86-64; the C file's hardware path is x86 assembly)
MACHINES = ("x86_64", "amd64")


def _crc() -> object:
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
        crc(data)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def agrees() -> bool:
    """aiokafka's compiled CRC-32C equals its pure-Python one (and the standard check value) on
    lengths across the hardware path's 8-byte steps and its three-stream blocks."""
    from aiokafka.record import _crc32c

    crc = _crc()
    if crc(b"123456789") != 0xE3069283:  # type: ignore[operator]
        return False
    for size in (*range(0, 70), 255, 256, 257, 1023, 4096, 8191, 8192, 8193, 65_537):
        data = os.urandom(size)
        if crc(data) != _crc32c.crc(data):  # type: ignore[operator]
            return False
    return True


def mode() -> str:
    """ "hardware" or "software": how this process's aiokafka computes Kafka's CRC-32C."""
    return "software" if ms_per_mib() > SOFTWARE_ABOVE_MS else "hardware"


def _fresh(what: str) -> str:
    """`what` (a function of this module, returning a str) asked in a new interpreter: the one
    running this has the aiokafka it imported before a rebuild."""
    out = subprocess.run(  # noqa: S603 (this interpreter, this module's own function)
        [sys.executable, "-c", f"from tools.kafka_crc import {what}; print({what}())"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-300:]})"


def build() -> int:
    """Rebuild the installed aiokafka from its source with the hardware CRC (x86-64); the wheel
    stays when that cannot be done. Returns 0 unless aiokafka is missing."""
    try:
        version = metadata.version("aiokafka")
    except metadata.PackageNotFoundError:
        print("kafka_crc: aiokafka is not installed", file=sys.stderr)
        return 1
    machine = platform.machine().lower()
    if machine not in MACHINES:
        print(f"kafka_crc: {machine}: no crc32 instruction to build for; aiokafka's wheel stays")
        return 0
    if _fresh("mode") == "hardware":
        print(f"kafka_crc: aiokafka {version} already computes CRC-32C in hardware")
        return 0
    env = {**os.environ, "CFLAGS": f"{os.environ.get('CFLAGS', '')} {FLAG}".strip()}
    # --no-cache-dir: pip's cache of wheels built from source does not key on CFLAGS
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--force-reinstall",
        "--no-cache-dir",
        "--no-binary",
        "aiokafka",
        f"aiokafka=={version}",
    ]
    print(f"kafka_crc: building aiokafka {version} from source with {FLAG}", flush=True)
    done = subprocess.run(cmd, env=env, check=False)  # noqa: S603 (pip, a pinned release)
    now = _fresh("mode")
    if done.returncode != 0 or now != "hardware":
        print(
            f"kafka_crc: WARNING: the build did not give a hardware CRC (pip exit"
            f" {done.returncode}, now {now}); aiokafka keeps computing it in software",
            file=sys.stderr,
        )
        return 0
    if _fresh("agreement") != "agrees":
        # pip built from the same source: a disagreement means a broken compiler, not a setting
        print("kafka_crc: the rebuilt CRC-32C disagrees: reinstalling the wheel", file=sys.stderr)
        cmd[cmd.index("--no-binary") : cmd.index("--no-binary") + 2] = ["--only-binary", ":all:"]
        subprocess.run(cmd, check=True)  # noqa: S603
        return 0
    print(f"kafka_crc: aiokafka {version} now computes CRC-32C in hardware")
    return 0


def agreement() -> str:
    return "agrees" if agrees() else "disagrees"


def status() -> int:
    speed, ok = ms_per_mib(), agrees()
    print(
        f"aiokafka {metadata.version('aiokafka')}: CRC-32C in"
        f" {'software' if speed > SOFTWARE_ABOVE_MS else 'hardware'}, {speed:.3f} ms per MiB;"
        f" {'agrees' if ok else 'DISAGREES'} with aiokafka's pure-Python CRC-32C"
    )
    return 0 if ok and speed <= SOFTWARE_ABOVE_MS else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "status"))
    args = parser.parse_args(argv)
    return build() if args.command == "build" else status()


if __name__ == "__main__":
    raise SystemExit(main())
