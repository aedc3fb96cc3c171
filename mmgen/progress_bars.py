"""rich progress bars that fit the terminal: on a narrow one a row drops whole columns instead of cutting its
numbers short (`2…`, `0:…` at 20 columns)."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from rich.ansi import AnsiDecoder
from rich.console import Console
from rich.file_proxy import FileProxy
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

MIN_BAR = 10  # columns: a narrower bar says nothing its count does not
# Without a bar (a log, a pipe), a count says how far it has come at each quarter of its whole (its end too),
PLAIN_EVERY = 0.25
PLAIN_SECONDS = 30.0  # and at least this often while it moves: a slow one's log shows it moving
# How far back the time left is estimated from: the rate over the updates of the last SPEED_WINDOW seconds. rich's
# default (30 s) left no estimate at all where one item takes longer (a batch job, a training log step).
SPEED_WINDOW = 600.0


def eta(task: Task) -> str:
    """`, ETA H:MM:SS` — the time left of `task` as its bar's TimeRemainingColumn shows it — for a plain line (of
    clips, jobs, training steps, a download's bytes); "" while it is unknown (fewer than two updates in SPEED_WINDOW,
    no total) or the task is done."""
    if task.finished or task.time_remaining is None:
        return ""
    return f", ETA {TimeRemainingColumn().render(task)}"


class FittingProgress(Progress):
    """A Progress whose rows show every column where the console is wide enough, and otherwise leave columns out
    whole — the bar first, then the first column (the description), then the `optional` columns in their order
    (a loss, the time taken) — so what is shown (a count, a time) is never cut short. Only below the narrowest row
    (the counts and times alone) does rich cut it."""

    def __init__(self, *columns: str | ProgressColumn, optional: Iterable[str | ProgressColumn] = (),
                 redirect_stdout: bool = True, redirect_stderr: bool = True, **kwargs):
        self._optional = list(optional)  # before Progress starts: it draws its (empty) table already
        self._redirected = {"stdout": redirect_stdout, "stderr": redirect_stderr}  # as WholeLines, not rich's own
        self._restored: dict[str, object] = {}
        super().__init__(*columns, redirect_stdout=False, redirect_stderr=False, **kwargs)

    def start(self) -> None:
        super().start()
        if self.live.is_started and self.console.is_terminal:  # where rich's Live would redirect them
            for name, wanted in self._redirected.items():
                stream = getattr(sys, name)
                if wanted and not isinstance(stream, FileProxy):
                    self._restored[name] = stream
                    setattr(sys, name, WholeLines(self.console, stream))

    def stop(self) -> None:
        for name, stream in self._restored.items():
            getattr(sys, name).flush()
            setattr(sys, name, stream)
        self._restored = {}
        super().stop()

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        rows = [[column.format(task=task) if isinstance(column, str) else column(task) for column in self.columns]
                for task in tasks if task.visible]
        columns = list(self.columns)
        droppable = [c for c in columns if isinstance(c, BarColumn)] + columns[:1] + self._optional
        kept = list(range(len(columns)))
        for column in droppable if rows else ():  # no rows: nothing to fit (nor a console yet, as Progress starts)
            if self._width_needed([columns[i] for i in kept], [[row[i] for i in kept] for row in rows]) <= \
                    self.console.width:
                break
            kept = [i for i in kept if columns[i] is not column] or kept
        table = Table.grid(*(self._table_column(columns[i]) for i in kept), padding=(0, 1), expand=self.expand)
        for row in rows:
            table.add_row(*(row[i] for i in kept))
        return table

    def _width_needed(self, columns: list[str | ProgressColumn], rows: list[list]) -> int:
        """Columns a row of these cells takes at its widest: each cell whole, a bar MIN_BAR, one between each."""
        options = self.console.options
        widths = [MIN_BAR if isinstance(column, BarColumn) else
                  max((Measurement.get(self.console, options, row[i]).maximum for row in rows), default=0)
                  for i, column in enumerate(columns)]
        return sum(widths) + len(widths) - 1

    @staticmethod
    def _table_column(column: str | ProgressColumn) -> Column:
        return Column(no_wrap=True) if isinstance(column, str) else column.get_table_column().copy()


class WholeLines(FileProxy):
    """sys.stdout or sys.stderr while bars are drawn: each line written to it is printed above the bars, as rich's
    FileProxy prints it, but never folded at the terminal's width — rich's broke a --json line into many (invalid
    JSON) and a note's file name in two with real newlines. The terminal wraps a long line on screen only."""

    def __init__(self, console: Console, stream) -> None:
        super().__init__(console, stream)
        self._console, self._partial, self._decoder = console, "", AnsiDecoder()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._print(lines)
        return len(text)

    def flush(self) -> None:
        partial, self._partial = self._partial, ""
        if partial:
            self._print([partial])

    def _print(self, lines: list[str]) -> None:
        with self._console:
            self._console.print(Text("\n").join(map(self._decoder.decode_line, lines)), soft_wrap=True)


class PlainPace:
    """When a plain progress line is due (PLAIN_EVERY, PLAIN_SECONDS): a few lines for a count however many items it
    has (a download's bytes, a clip's windows), not one per item. `first`: the share of the whole from which a line
    is due at once; `now`: the time it starts from, in the caller's clock."""

    def __init__(self, first: float, now: float):
        self._next_share = first
        self._next_time = now + PLAIN_SECONDS

    def due(self, share: float | None, now: float) -> bool:
        """Whether a line is due now, at `share` of the whole (None: the whole is unknown, time alone decides)."""
        quarter = share is not None and share >= self._next_share
        if not (quarter or now >= self._next_time):
            return False
        while share is not None and share >= self._next_share:
            self._next_share += PLAIN_EVERY
        self._next_time = now + PLAIN_SECONDS
        return True
