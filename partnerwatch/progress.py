"""Progress of long work on stderr: a bar when the amount is known, else a spinner with the phase
and the time spent. Drawn only on a terminal and cleared when done (`transient`), so output that
is piped or captured (and stdout always) stays exactly the result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from partnerwatch.common import err


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """`advance(n)` moves a bar of `total` steps (None: a count without a bar)."""
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


@contextmanager
def phases(first: str) -> Iterator[Callable[[str], None]]:
    """`say(text)` names the phase the work is in; a spinner and the time spent show it is alive."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(first, total=None)

        def say(text: str) -> None:
            bar.update(task, description=text)

        yield say
