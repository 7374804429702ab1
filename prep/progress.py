"""Rich progress bars on stderr, shown only on a terminal and when not quiet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, e.g. `412.3 pairs/s`."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} {self.unit}/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def progress_bar(enabled: bool, label: str, columns: list[ProgressColumn], total: float | None) -> Iterator[Callable]:
    """Yields `update(**fields)` (e.g. `advance=1`, or `completed=n, total=t`); a no-op when not shown."""
    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield lambda **fields: None
        return
    with Progress(TextColumn(label), *columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda **fields: bar.update(task, **fields)


def count_columns(unit: str) -> list[ProgressColumn]:
    return [BarColumn(), MofNCompleteColumn(), RateColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]


def byte_columns() -> list[ProgressColumn]:
    return [BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
