"""How wide and tall the terminal is, as every console of mmgen's takes it: COLUMNS and LINES where they hold a usable
size, else the window's own, on a dumb terminal too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def window_sized(shown: Console) -> Console:
    """`shown` (a console made with no width of its own: every mmgen table's, --help's) as wide as its window: on a
    dumb terminal (TERM=dumb) rich takes 80x25, whatever COLUMNS and the window say (`_window_size`)."""
    if shown.is_dumb_terminal:
        shown.size = _window_size(shown.file)
    return shown


def _window_size(stream) -> tuple[int, int]:
    """The columns and lines of the terminal `stream` writes to, as rich finds them on any terminal but a dumb one
    (TERM=dumb: Emacs's M-x shell, often 200 wide, which sets COLUMNS but not LINES): COLUMNS and LINES where set,
    else the terminal's own size, else 80x25."""
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):  # no descriptor (a test's stream), or none of a terminal's
        columns = lines = 0
    return _size_given("COLUMNS") or columns or 80, _size_given("LINES") or lines or 25


SIZE_RANGE = {"COLUMNS": (20, 1000), "LINES": (1, 1000)}  # widths under 20 showed --help's borders and no text;
# rich lays a line out in memory as wide as it is told (COLUMNS=10000000: 2 GB and 16 s for --help; more: out of memory)


def _size_given(name: str) -> int | None:
    """COLUMNS or LINES as a number of cells, brought within SIZE_RANGE: None where unset or not a positive whole
    number (0, -3, junk)."""
    value = os.environ.get(name, "")
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        return None
    least, most = SIZE_RANGE[name]
    return min(max(int(value), least), most)


@contextmanager
def usable_size() -> Iterator[None]:
    """COLUMNS and LINES, while the block runs (a command), unset where they hold no positive number of cells, as if
    never set (the terminal's own size is used, else 80x25), and brought within SIZE_RANGE where they do. rich took
    COLUMNS=0 as a width of 0 and dropped every line (`--help` printed an empty line, a run no bar, no `wrote` line,
    no summary), failed on COLUMNS=², and ran out of memory on COLUMNS=99999999999; typer's help console reads them
    as rich does. They are put back after: an embedding program's own environment."""
    given = {name: os.environ[name] for name in ("COLUMNS", "LINES") if name in os.environ}
    for name in given:
        size = _size_given(name)
        if size is None:
            del os.environ[name]
        else:
            os.environ[name] = str(size)
    try:
        yield
    finally:
        os.environ.update(given)
