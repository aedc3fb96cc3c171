"""Pipeline progress on stderr: rich bars on a terminal, a few plain lines of finished clips/windows otherwise
(the first, each quarter, the last, and every 30 s: progress_bars.PlainPace, as a download's; a line per window or
step would flood a log file), each with the time left its bar, or its steps' bar where longer, would show (`eta`); a
slow clip's or window's sampling steps every 30 s without another line (`clip 1/1: step 300/650`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mmgen import terminal
from mmgen.pipelines.events import ProgressEvent, ProgressFn
from mmgen.progress_bars import PLAIN_SECONDS, SPEED_WINDOW, FittingProgress, PlainPace, eta
from mmgen.terminal import say

_LABELS = {"jobs": "jobs", "clips": "clips", "windows": "windows", "steps": "sampling", "upscale": "upscaling"}
_ITEMS = {"clips": "clip", "windows": "window"}  # what a plain step line says it is in: `clip 1/2, window 3/5: …`
_INNER = {"steps": "step", "upscale": "upscaling"}  # counts inside an item: a slow one's line every PLAIN_SECONDS


class PlainLines:
    """Progress without bars (a pipe, a file, NO_COLOR): lines of finished clips or windows, with their ETA, as
    PlainPace spaces them (12 windows: the 1st, 3rd, 6th, 9th and 12th); inside a slow clip or window, its sampling
    steps (`clip 1/1: step 300/650`) once PLAIN_SECONDS pass without a line — a 650-step clip was 2 silent minutes.
    `track` keeps the count of any task without a line; `inner` says only the steps' lines (a batch says each job's
    line itself, with `eta_of("jobs")`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._tasks = Progress(disable=True, get_time=clock, speed_estimate_period=SPEED_WINDOW)
        self._ids: dict[str, TaskID] = {}
        self._paces: dict[str, tuple[int, PlainPace]] = {}  # a task's pace, by the count it was last at
        self._said_at = clock()  # when the last line was said

    def track(self, event: ProgressEvent) -> None:
        if event.task == "jobs":  # a batch's next job: its clips and windows are its own (not the last job's 1/1)
            for name in _ITEMS.keys() & self._ids.keys():
                self._tasks.remove_task(self._ids.pop(name))
        if event.task not in self._ids:  # from 0, as a bar's: a task's first count (a batch's jobs done before this
            self._ids[event.task] = self._tasks.add_task(event.task, total=event.total)  # run) is where its rate starts
        elif event.done < next(t.completed for t in self._tasks.tasks if t.id == self._ids[event.task]):  # a count restarting (a window's
            # steps, the next job's): its rate starts again, not counted from the last one's end (no time left then)
            self._tasks.reset(self._ids[event.task], total=event.total, completed=event.done)
        self._tasks.update(self._ids[event.task], completed=event.done, total=event.total)

    def eta_of(self, task: str, *more: str) -> str:
        """The time left of `task` as a line says it, the longest of it and `more`'s where they are known."""
        ids = {self._ids.get(name) for name in (task, *more)}
        known = [t for t in self._tasks.tasks if t.id in ids and eta(t)]
        return eta(max(known, key=lambda t: t.time_remaining)) if known else ""

    def inner(self, event: ProgressEvent) -> None:
        """Track `event`, and say a step line if one is due (a count inside an item: PLAIN_SECONDS without a line)."""
        self.track(event)
        now = self._clock()
        if event.task == "jobs":  # a batch says the job's line as it counts it
            self._said_at = now
        elif event.task in _INNER and 0 < event.done < event.total and now - self._said_at >= PLAIN_SECONDS:
            say(f"{event.job + ': ' if event.job else ''}{self._where(event.task)}{_INNER[event.task]} {event.done}/{event.total}{self.eta_of(event.task)}")
            self._said_at = now

    def _where(self, task: str) -> str:
        """`clip 1/2, window 3/5: `: the item each count is at (the one after those done), or "" outside any. Past
        the last of them (an animation's windows all sampled), a `task` of steps is the upscaling's: `upscaling: `,
        as an upscale's own line says it (`upscaling 16/20`)."""
        tasks = {t.description: t for t in self._tasks.tasks}
        at = [f"{_ITEMS[name]} {int(t.completed) + 1}/{int(t.total)}"
              for name, t in tasks.items() if name in _ITEMS and t.total and t.completed < t.total]
        upscale = tasks.get("upscale")
        if not at and task != "upscale" and upscale is not None and upscale.completed < (upscale.total or 0):
            at = ["upscaling"]
        return f"{', '.join(at)}: " if at else ""

    def __call__(self, event: ProgressEvent) -> None:
        self.inner(event)
        if event.task not in ("clips", "windows"):
            return
        last, pace = self._paces.get(event.task, (event.done, None))
        if pace is None or event.done < last:  # a count (re)starting: its first item's line is due at once
            pace = PlainPace(0.0, self._clock())
        self._paces[event.task] = (event.done, pace)
        if event.done > 0 and pace.due(event.done / max(event.total, 1), self._clock()):
            # the longer time left of the items and their steps: an animate's steps count on past its windows,
            # into the upscaling after them (conditional.make_matching)
            say(f"{_LABELS[event.task]}: {event.done}/{event.total}{self.eta_of(event.task, 'steps')}")
            self._said_at = self._clock()


@contextmanager
def progress_display(console: Console | None = None) -> Iterator[ProgressFn]:
    """Yield the callback a pipeline reports to; bars live for the duration of the `with` block."""
    console = console or terminal.console()
    if not terminal.draws(console):  # a pipe, a file, or NO_COLOR: no bars, whose redrawing is escape sequences
        yield PlainLines()
        return
    tasks: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               _TimeLeft(lambda: next((t for t in bars.tasks if t.id == tasks.get("steps")), None)))
    # rich sends what is printed to stdout while the bars show through their console (stderr): only a terminal's
    # stdout may go there (printed above the bars, on the same screen); a pipe's --json lines stay on stdout.
    with FittingProgress(*columns, console=console, transient=True, redirect_stdout=terminal.is_tty(sys.stdout),
                         speed_estimate_period=SPEED_WINDOW) as bars:

        def show(event: ProgressEvent) -> None:
            if event.task not in tasks:
                tasks[event.task] = bars.add_task(_LABELS[event.task], total=event.total, counts=event.task)
            bars.update(tasks[event.task], completed=event.done, total=event.total)

        yield show


class _TimeLeft(TimeRemainingColumn):
    """A bar's time left; a bar of items (clips, windows) shows the longer of its own and its steps' — an
    animation's steps count on past its windows into the upscaling after them (conditional.make_matching) — as a
    plain line of them says it (PlainLines.eta_of): `windows 2/2` with the upscaling to go is not 0:00:00. Not
    before its first item ends: steps restart with every window or batch of clips (unless upscaled), and the first
    one's time left alone would read as the whole's (`windows 0/5` ending in a minute that is one window's)."""

    def __init__(self, steps: Callable[[], Task | None]):
        super().__init__()
        self._steps = steps

    def render(self, task: Task) -> Text:
        steps = self._steps() if task.fields.get("counts") in _ITEMS else None
        if steps is not None and not steps.finished and steps.time_remaining is not None and (
                task.finished or (task.time_remaining is not None and steps.time_remaining > task.time_remaining)):
            return super().render(steps)
        return super().render(task)
