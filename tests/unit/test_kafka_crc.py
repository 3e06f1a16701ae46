"""tools/kafka_crc.py: aiokafka rebuilt with the hardware CRC-32C computes the same CRC, and the
build step never breaks an install nor leaves a build it could not confirm."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tools import kafka_crc


def test_the_installed_crc_agrees_with_aiokafkas_pure_python_one() -> None:
    # whichever build is installed (make install rebuilds it with the crc32 instruction): every
    # record batch produced and fetched depends on it
    assert kafka_crc.agrees()


def test_a_wrong_crc_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_crc, "_crc", lambda: lambda data: 0xE3069283 ^ len(data))
    assert not kafka_crc.agrees()


@pytest.mark.parametrize("wrong", ["past 64 bytes", "at 768", "unaligned", "at 24,577"])
def test_a_crc_wrong_only_somewhere_is_caught(monkeypatch: pytest.MonkeyPatch, wrong: str) -> None:
    from aiokafka.record import _crc32c

    real = kafka_crc._crc()

    def off(data: bytes | memoryview) -> int:
        value = real(data)
        size = len(data)
        # where a slice starts in the buffer it views (`agrees` passes memoryview slices)
        start = bytes(data.obj).find(bytes(data)) if isinstance(data, memoryview) and size else 0
        broken = {
            "past 64 bytes": size > 64,
            "at 768": size == 768,
            "unaligned": start % 8 == 3,
            "at 24,577": size == 24_577,
        }[wrong]
        return value ^ 1 if broken else value

    assert real(b"123456789") == _crc32c.crc(b"123456789")
    monkeypatch.setattr(kafka_crc, "_crc", lambda: off)
    assert not kafka_crc.agrees()


@pytest.mark.parametrize(
    ("ms", "mode"), [(0.037, "hardware"), (0.15, "hardware"), (0.53, "software")]
)
def test_mode_by_speed(monkeypatch: pytest.MonkeyPatch, ms: float, mode: str) -> None:
    monkeypatch.setattr(kafka_crc, "ms_per_mib", lambda: ms)
    assert kafka_crc.mode() == mode


def test_the_speed_is_that_of_aiokafkas_crc(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(data: bytes | memoryview) -> int:
        import time

        time.sleep(0.01)
        return 0

    monkeypatch.setattr(kafka_crc, "_crc", lambda: slow)
    assert kafka_crc.ms_per_mib(repeat=1) >= 10


def _no_pip(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"pip must not run: {args}")


def test_build_leaves_other_machines_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kafka_crc.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(kafka_crc.subprocess, "run", _no_pip)
    assert kafka_crc.build() == 0
    assert "wheel stays" in capsys.readouterr().out


@pytest.mark.parametrize("only", [":all:", "numpy,aiokafka", " AIOKAFKA "])
def test_build_honours_wheels_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], only: str
) -> None:
    monkeypatch.setattr(kafka_crc.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("PIP_ONLY_BINARY", only)
    monkeypatch.setattr(kafka_crc.subprocess, "run", _no_pip)
    assert kafka_crc.build() == 0
    assert "PIP_ONLY_BINARY" in capsys.readouterr().out


class Machine:
    """Stands in for pip and for the fresh interpreters `build` asks: what is installed."""

    def __init__(self, installed: tuple[str, str], built: tuple[str, str], pip_rc: int = 0) -> None:
        self.installed = installed  # (mode, agreement)
        self.built = built
        self.pip_rc = pip_rc
        self.commands: list[tuple[list[str], dict[str, str]]] = []

    def run(self, cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> Any:
        if cmd[1] == "-c":  # `_fresh`: `state()` in a new interpreter
            return subprocess.CompletedProcess(cmd, 0, " ".join(self.installed) + "\n", "")
        self.commands.append((cmd, env or {}))
        if self.pip_rc == 0:
            self.installed = self.built if "--no-binary" in cmd else ("software", "agrees")
        return subprocess.CompletedProcess(cmd, self.pip_rc)


@pytest.fixture
def x86(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(kafka_crc.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("PIP_ONLY_BINARY", raising=False)
    monkeypatch.setenv("CFLAGS", "-O2")
    yield


def _build(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> int:
    monkeypatch.setattr(kafka_crc.subprocess, "run", machine.run)
    return kafka_crc.build()


def test_a_build_that_works_is_kept(
    x86: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = Machine(("software", "agrees"), ("hardware", "agrees"))
    assert _build(monkeypatch, machine) == 0
    ((cmd, env),) = machine.commands
    at = cmd.index("--no-binary")
    assert cmd[at + 1] == "aiokafka" and cmd[-1].startswith("aiokafka==")
    assert "--no-cache-dir" in cmd and "--force-reinstall" in cmd and "--no-deps" in cmd
    assert env["CFLAGS"] == f"-O2 {kafka_crc.FLAG}"  # the operator's flags kept
    assert machine.installed == ("hardware", "agrees")
    assert "now computes CRC-32C in hardware" in capsys.readouterr().out


def test_a_failed_build_warns_and_keeps_the_install(
    x86: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = Machine(("software", "agrees"), ("hardware", "agrees"), pip_rc=1)
    assert _build(monkeypatch, machine) == 0  # an install goes on with the wheel
    assert len(machine.commands) == 1  # pip kept what was installed: nothing to put back
    assert "WARNING" in capsys.readouterr().err


@pytest.mark.parametrize(
    "built",
    [("hardware", "disagrees"), ("software", "agrees"), ("unknown (ImportError)", "unknown")],
)
def test_a_build_that_is_not_the_hardware_crc_gives_way_to_the_wheel(
    x86: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    built: tuple[str, str],
) -> None:
    machine = Machine(("software", "agrees"), built)
    assert _build(monkeypatch, machine) == 0
    source, wheel = machine.commands
    assert "--no-binary" in source[0]
    at = wheel[0].index("--only-binary")
    assert wheel[0][at + 1] == "aiokafka" and "--no-binary" not in wheel[0]
    assert wheel[0][-1] == source[0][-1]  # the same release
    assert machine.installed == ("software", "agrees")
    assert "reinstalling the wheel" in capsys.readouterr().err


def test_a_wheel_that_cannot_come_back_is_said_not_raised(
    x86: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = Machine(("software", "agrees"), ("hardware", "disagrees"))
    runs = machine.run

    def offline_after_build(cmd: list[str], **kw: Any) -> Any:
        if "--only-binary" in cmd:
            return subprocess.CompletedProcess(cmd, 1)
        return runs(cmd, **kw)

    monkeypatch.setattr(kafka_crc.subprocess, "run", offline_after_build)
    assert kafka_crc.build() == 0
    assert "could not be reinstalled" in capsys.readouterr().err


def test_build_is_skipped_only_when_hardware_and_agreeing(
    x86: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = Machine(("hardware", "agrees"), ("hardware", "agrees"))
    assert _build(monkeypatch, good) == 0
    assert good.commands == [] and "already" in capsys.readouterr().out
    # a disagreeing rebuild left by an earlier run is rebuilt, not taken as done
    bad = Machine(("hardware", "disagrees"), ("hardware", "agrees"))
    assert _build(monkeypatch, bad) == 0
    assert len(bad.commands) == 1 and bad.installed == ("hardware", "agrees")


def test_a_hung_pip_is_a_failed_build(
    x86: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = Machine(("software", "agrees"), ("hardware", "agrees"))
    runs = machine.run

    def hangs(cmd: list[str], **kw: Any) -> Any:
        if cmd[1] == "-m":
            assert kw.get("timeout") == kafka_crc.PIP_SECONDS
            raise subprocess.TimeoutExpired(cmd, kw["timeout"])
        return runs(cmd, **kw)

    monkeypatch.setattr(kafka_crc.subprocess, "run", hangs)
    assert kafka_crc.build() == 0
    assert "pip exit -1" in capsys.readouterr().err
