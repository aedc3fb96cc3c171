"""Byte progress for downloads and copies: a rich bar (bytes arrived of the whole, rate, time left) when stderr
is a terminal, a few plain lines otherwise (logs and CI stay readable), each saying what has arrived of the whole,
its rate and the time left as the bar says it (progress_bars.eta), nothing when quiet."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mmgen import terminal
from mmgen.progress_bars import PLAIN_EVERY, SPEED_WINDOW, FittingProgress, PlainPace, eta
from mmgen.terminal import say, size_text


class ByteProgress:
    """`with ByteProgress(label) as p: p.start(done, total); p.advance(n) ...; p.note("...")`."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self._bar: FittingProgress | None = None
        self._task = None
        self._done = 0
        self._total: int | None = None
        self._pace = PlainPace(PLAIN_EVERY, 0.0)  # plain lines: after the start's, at each quarter and every 30 s
        self._started = 0.0
        self._start_done = 0
        # Without a bar, the bytes still count on a task of their own, for the time left the bar would show (eta),
        # at the time advance() read last
        self._now = 0.0
        self._plain = Progress(disable=True, get_time=lambda: self._now, speed_estimate_period=SPEED_WINDOW)
        self._counted = None

    def __enter__(self) -> ByteProgress:
        shown = terminal.console()
        if not self.quiet and terminal.draws(shown):
            self._bar = FittingProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=shown,
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, done: int, total: int | None, resuming: bool | None = None) -> None:
        """A transfer (re)starts with `done` bytes already present out of `total` (None if unknown); `resuming`:
        whether they are an earlier transfer's kept bytes (by default: whether there are any)."""
        self._done, self._total = done, total
        self._start_done, self._started = done, time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
        elif not self.quiet:
            self._now = self._started
            if self._counted is not None:
                self._plain.remove_task(self._counted)
            # Counted one byte ahead (of a whole one byte larger): the start is the rate's first sample even at 0
            # bytes, which rich keeps only for a count that grew — the time to the first bytes is part of the rate
            self._counted = self._plain.add_task(self.label, total=None if total is None else total + 1)
            self._plain.update(self._counted, completed=done + 1)
            self._pace = PlainPace((done / total if total else 0.0) + PLAIN_EVERY, self._started)
            resumed = bool(done) if resuming is None else resuming
            self.note(f"{self.label}: {self._arrived()}{', resuming' if resumed else ''}")

    def advance(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
            return
        if self.quiet:
            return
        now = self._now = time.monotonic()
        if self._counted is not None:
            self._plain.update(self._counted, completed=self._done + 1)
        if self._pace.due(self._done / self._total if self._total else None, now):
            rate = (self._done - self._start_done) / max(now - self._started, 1e-6)
            share = f"{self._done / self._total:.0%}, " if self._total else ""
            left = next((eta(task) for task in self._plain.tasks if task.id == self._counted), "")
            self.note(f"{self.label}: {self._arrived()} ({share}{size_text(round(rate))}/s{left})")

    def _arrived(self) -> str:
        """What has arrived of the whole: `1.4 MB of 560.0 MB` (never the announced size alone)."""
        return f"{size_text(self._done)} of {size_text(self._total) if self._total else 'unknown size'}"

    def to(self, done: int, total: int | None, kept: int = 0) -> None:
        """Absolute progress, for libraries that report bytes so far (gdown's `progress` callback, first called
        after a chunk has come); `kept`: the bytes a partial download held before this transfer, resumed."""
        if self._started == 0.0 or total != self._total:
            self.start(done, total, resuming=kept > 0)
        else:
            self.advance(done - self._done)

    def note(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            say(f"mmgen: {message}")
