"""Pipeline progress on stderr: rich bars on a terminal, a plain line per finished clip/window otherwise
(per-step lines would flood a log file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from mmgen import terminal
from mmgen.pipelines.events import ProgressEvent, ProgressFn
from mmgen.terminal import say

_LABELS = {"jobs": "jobs", "clips": "clips", "windows": "windows", "steps": "sampling", "upscale": "upscaling"}


@contextmanager
def progress_display(console: Console | None = None) -> Iterator[ProgressFn]:
    """Yield the callback a pipeline reports to; bars live for the duration of the `with` block."""
    console = console or terminal.console()
    if not terminal.draws(console):  # a pipe, a file, or NO_COLOR: no bars, whose redrawing is escape sequences
        yield _plain_lines
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # rich sends what is printed to stdout while the bars show through their console (stderr): only a terminal's
    # stdout may go there (printed above the bars, on the same screen); a pipe's --json lines stay on stdout.
    with Progress(*columns, console=console, transient=True, redirect_stdout=_is_terminal(sys.stdout)) as bars:
        tasks: dict[str, TaskID] = {}

        def show(event: ProgressEvent) -> None:
            if event.task not in tasks:
                tasks[event.task] = bars.add_task(_LABELS[event.task], total=event.total)
            bars.update(tasks[event.task], completed=event.done, total=event.total)

        yield show


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed
        return False


def _plain_lines(event: ProgressEvent) -> None:
    if event.task in ("clips", "windows") and event.done > 0:
        say(f"{_LABELS[event.task]}: {event.done}/{event.total}")
