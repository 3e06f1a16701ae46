"""bench/profile.py's options: `--gil` (only the lock holder) and `--idle` (waits too) exclude
each other, refused before any event is produced or worker started."""

from __future__ import annotations

import sys

import pytest

from bench import profile


def test_gil_and_idle_are_refused_together(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []

    def namespace(*args: object, **kwargs: object) -> None:
        started.append(args)
        raise RuntimeError("the bench went on to start a worker")

    monkeypatch.setattr(profile, "Namespace", namespace)
    monkeypatch.setattr(sys, "argv", ["bench.profile", "--gil", "--idle"])
    with pytest.raises(SystemExit) as exc:
        profile.main()
    assert exc.value.code == 2
    assert not started
