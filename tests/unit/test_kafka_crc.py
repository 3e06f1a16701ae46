"""tools/kafka_crc.py: aiokafka rebuilt with the hardware CRC-32C computes the same CRC, and the
build step never breaks an install."""

from __future__ import annotations

import subprocess
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


def test_the_check_value_alone_does_not_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.record import _crc32c

    def off_by_one_past_64(data: bytes) -> int:
        value = _crc32c.crc(data)
        return value ^ 1 if len(data) > 64 else value

    monkeypatch.setattr(kafka_crc, "_crc", lambda: off_by_one_past_64)
    assert not kafka_crc.agrees()


@pytest.mark.parametrize(
    ("ms", "mode"), [(0.037, "hardware"), (0.15, "hardware"), (0.53, "software")]
)
def test_mode_by_speed(monkeypatch: pytest.MonkeyPatch, ms: float, mode: str) -> None:
    monkeypatch.setattr(kafka_crc, "ms_per_mib", lambda: ms)
    assert kafka_crc.mode() == mode


def test_the_speed_is_measured_on_aiokafkas_crc() -> None:
    assert 0 < kafka_crc.ms_per_mib(repeat=1) < 100


def _no_pip(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"pip must not run: {args}")


def test_build_leaves_other_machines_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kafka_crc.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(kafka_crc.subprocess, "run", _no_pip)
    assert kafka_crc.build() == 0
    assert "wheel stays" in capsys.readouterr().out


def test_build_is_skipped_when_already_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_crc.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(kafka_crc, "_fresh", lambda what: "hardware")
    monkeypatch.setattr(kafka_crc.subprocess, "run", _no_pip)
    assert kafka_crc.build() == 0


def test_a_failed_build_warns_and_keeps_the_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []

    def pip(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> Any:
        calls.append((cmd, env or {}))
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(kafka_crc.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(kafka_crc, "_fresh", lambda what: "software")
    monkeypatch.setattr(kafka_crc.subprocess, "run", pip)
    monkeypatch.setenv("CFLAGS", "-O2")
    assert kafka_crc.build() == 0  # an install goes on with the wheel
    assert "WARNING" in capsys.readouterr().err
    ((cmd, env),) = calls
    assert cmd[-1].startswith("aiokafka==") and "--no-binary" in cmd and "--no-cache-dir" in cmd
    assert env["CFLAGS"] == f"-O2 {kafka_crc.FLAG}"  # the operator's flags kept
