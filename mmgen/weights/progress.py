"""Byte progress for downloads and copies: a rich bar (bytes, rate, time left) when stderr is a terminal,
a few plain lines otherwise (logs and CI stay readable), nothing when quiet."""

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
from mmgen.terminal import say

_PLAIN_EVERY = 0.25  # plain mode prints at each quarter of the file (and at the end)


class ByteProgress:
    """`with ByteProgress(label) as p: p.start(done, total); p.advance(n) ...; p.note("...")`."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task = None
        self._done = 0
        self._total: int | None = None
        self._next_report = 0.0
        self._started = 0.0
        self._start_done = 0

    def __enter__(self) -> ByteProgress:
        shown = terminal.console()
        if not self.quiet and terminal.draws(shown):
            self._bar = Progress(
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

    def start(self, done: int, total: int | None) -> None:
        """A transfer (re)starts with `done` bytes already present out of `total` (None if unknown)."""
        self._done, self._total = done, total
        self._start_done, self._started = done, time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
        elif not self.quiet:
            self._next_report = (done / total if total else 0.0) + _PLAIN_EVERY
            resumed = f", resuming at {_mb(done)}" if done else ""
            self.note(f"{self.label}: {_mb(total) if total else 'unknown size'}{resumed}")

    def advance(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif not self.quiet and self._total and self._done / self._total >= self._next_report:
            self._next_report += _PLAIN_EVERY
            rate = (self._done - self._start_done) / max(time.monotonic() - self._started, 1e-6)
            self.note(f"{self.label}: {self._done / self._total:4.0%} ({_mb(self._done)}, {_mb(rate)}/s)")

    def to(self, done: int, total: int | None) -> None:
        """Absolute progress, for libraries that report bytes so far (gdown's `progress` callback)."""
        if self._started == 0.0 or total != self._total:
            self.start(done, total)
        else:
            self.advance(done - self._done)

    def note(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            say(f"mmgen: {message}")


def _mb(n: float | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"
