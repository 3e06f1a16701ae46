"""Every help screen of the command line renders, and shows no `<str>`/`<bool>`-style type
placeholders (typer 0.27+ prints them; pyproject.toml pins typer below 0.27), and every option
with a fixed set of values lists them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from partnerwatch.main import cli

ROOT = typer.main.get_command(cli)


def paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in getattr(
        command, "commands", {}
    ).items():  # a group (typer vendors its own click)
        if not sub.hidden:
            yield from paths(sub, (*prefix, name))


ALL = list(paths(ROOT))


def test_the_walk_finds_the_new_commands() -> None:
    for path in [
        ("grants", "add"),
        ("grants", "import"),
        ("alerts", "list"),
        ("alerts", "show"),
        ("deadletter", "tail"),
        ("deadletter", "show"),
        ("validate",),
        ("send",),
    ]:
        assert path in ALL, path


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "partnerwatch")
def test_help_has_no_type_placeholders(path: tuple[str, ...]) -> None:
    done = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "120"})
    assert done.exit_code == 0, done.output
    assert not re.search(r"<(bool|str|int|float|list\[[a-z]+\]|path)>", done.output), done.output


@pytest.mark.parametrize(
    ("path", "choices"),
    [
        (("sql",), "[table|vertical|csv|json]"),
        (("alerts", "tail"), "[info|low|medium|high|critical]"),
        (("alerts", "tail"), "[auto|sse|kafka]"),
        (("alerts", "list"), "[open|acknowledged|resolved]"),
        (("kafka",), "{start|stop|status|reset}"),
        (("digest", "create"), "[hour|day]"),
    ],
)
def test_fixed_choices_are_listed(path: tuple[str, ...], choices: str) -> None:
    done = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "200"})
    assert choices in done.output
