"""Pipeline progress on stderr: rich bars on a terminal, a plain line per finished clip/window otherwise
(per-step lines would flood a log file), each with the time left the bar would show (`eta`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from mmgen import terminal
from mmgen.pipelines.events import ProgressEvent, ProgressFn
from mmgen.progress_bars import SPEED_WINDOW, FittingProgress, eta
from mmgen.terminal import say

_LABELS = {"jobs": "jobs", "clips": "clips", "windows": "windows", "steps": "sampling", "upscale": "upscaling"}


class PlainLines:
    """Progress without bars (a pipe, a file, NO_COLOR): a line per finished clip or window, with its ETA. `track`
    keeps the count of any task without a line (a batch says each job's line itself, with `eta_of("jobs")`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._tasks = Progress(disable=True, get_time=clock, speed_estimate_period=SPEED_WINDOW)
        self._ids: dict[str, TaskID] = {}

    def track(self, event: ProgressEvent) -> None:
        if event.task not in self._ids:  # from 0, as a bar's: a task's first count (a batch's jobs done before this
            self._ids[event.task] = self._tasks.add_task(event.task, total=event.total)  # run) is where its rate starts
        self._tasks.update(self._ids[event.task], completed=event.done, total=event.total)

    def eta_of(self, task: str) -> str:
        return next((eta(t) for t in self._tasks.tasks if t.id == self._ids.get(task)), "")

    def __call__(self, event: ProgressEvent) -> None:
        self.track(event)
        if event.task in ("clips", "windows") and event.done > 0:
            say(f"{_LABELS[event.task]}: {event.done}/{event.total}{self.eta_of(event.task)}")


@contextmanager
def progress_display(console: Console | None = None) -> Iterator[ProgressFn]:
    """Yield the callback a pipeline reports to; bars live for the duration of the `with` block."""
    console = console or terminal.console()
    if not terminal.draws(console):  # a pipe, a file, or NO_COLOR: no bars, whose redrawing is escape sequences
        yield PlainLines()
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # rich sends what is printed to stdout while the bars show through their console (stderr): only a terminal's
    # stdout may go there (printed above the bars, on the same screen); a pipe's --json lines stay on stdout.
    with FittingProgress(*columns, console=console, transient=True, redirect_stdout=_is_terminal(sys.stdout),
                         speed_estimate_period=SPEED_WINDOW) as bars:
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
