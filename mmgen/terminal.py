"""Lines for the person at the terminal, on stderr."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from mmgen.held_text import held_by
from mmgen.terminal_size import window_sized

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

WIDTH_WHEN_PIPED = 400  # columns: wider than any table of mmgen's, so piped rows are not folded
WIDE_TABLE = 150  # columns from which a table shows its long columns (hashes, URLs) too
# characters of a value (a run without spaces: a path, a name, a number) an error line shows whole: any path the
# system takes (Linux's PATH_MAX), so that one can be copied from the line
LONGEST_VALUE = 4096
LONGEST_LINE = 10_000  # characters of a whole line, whatever its values hold (spaces too): two such paths and words
_LONG_VALUE = re.compile(rf"\S{{{LONGEST_VALUE + 1},}}?(?=[:;,)]?(?:\s|$))")  # not the punctuation after it


def say(line: str) -> None:
    """`line` and its newline in one write: with stderr unbuffered (PYTHONUNBUFFERED), print() writes them
    apart, and the lines of parallel processes (torchrun's workers) then mix mid-line. One line, whatever it holds:
    a file name's newline, ESC or byte that is not UTF-8 is written as its escape (path_text), so every error and
    message said here — the CLI's error line is — names its files as the `wrote` lines do. With stderr closed
    (`2>&-`: sys.stderr is None) or gone, the line is dropped: never sent to stdout, as print(file=None) would,
    and never an error of its own that would change the exit status. A value too long to read (a 15 MB name from
    a batch file) is shown shortened (`shortened`)."""
    stream = sys.stderr
    if stream is None or stream.closed:
        return
    try:
        stream.write(held_by(path_text(shortened(line)) + "\n", getattr(stream, "encoding", None)))
        stream.flush()
    except OSError:  # the reader went away (EPIPE) or the descriptor was closed under us (EBADF)
        pass


class GuardedStream:
    """sys.stdout or sys.stderr while a command runs (`guarded_streams`). A character the stream's encoding cannot
    hold (`LC_ALL=C PYTHONIOENCODING=ascii`: "×", "✓") is written as its ASCII stand-in ("x", `held_by`) instead of
    failing the command. On stderr, a write the OS refuses (closed by `2>&-`, a full disk) is dropped: a run that did its work
    does not fail because a message could not be shown. On stdout, where the result goes, it is raised, and kept in
    `failed`: the command then ends as stdout's failure (mmgen.cli), whichever library was writing.

    A `holds` stream (stdout into a pipe or a file) keeps what is printed, whatever flushes it (rich flushes each
    print), until `release`: a command's whole output goes out in one write as it ends — all in the pipe before
    `head -1` reads its line and goes, so `mmgen models list | head -1` exits 0 — unless a result a script reads
    as it comes (`as_it_comes`) releases it sooner; from then on what is printed is written as it comes."""

    def __init__(self, stream, drops_errors: bool, holds: bool = False) -> None:
        self.stream = stream
        self.drops_errors = drops_errors
        self.failed: OSError | None = None
        self.held: list[str] | None = [] if holds else None

    def write(self, text: str) -> int:
        if self.held is not None:
            if not isinstance(text, str):  # a text stream's answer: click asks so (write(b"")) whether it is one
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            self.held.append(text)
            return len(text)
        return self._guarded(self._write, text)

    def flush(self) -> None:
        if self.held is None:
            self._guarded(self.stream.flush)

    def release(self) -> None:
        """Write what is held, in one write, and flush; hold nothing from now on."""
        held, self.held = self.held, None
        if held:
            self._guarded(self._write, "".join(held))
        self.flush()

    def write_bytes(self, data: bytes) -> None:
        """`data` as those very bytes, what is held written first: a file a command prints to be saved and read back
        as UTF-8 stays UTF-8 whatever the stream's encoding (a Windows console's cp1252). A stream of text only (a
        StringIO) takes it as UTF-8 text."""
        buffer = getattr(self.stream, "buffer", None)
        if buffer is None:
            self.write(data.decode("utf-8"))
            return
        self.release()
        self._guarded(buffer.write, data)
        self._guarded(buffer.flush)

    def _write(self, text: str) -> int:
        # as the stream can hold it: not through the stream's own errors (Python's stderr: backslashreplace)
        return self.stream.write(held_by(text, getattr(self.stream, "encoding", None)))

    def _guarded(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            if not self.drops_errors:
                self.failed = e
                raise
            return len(args[0]) if args else None

    def __getattr__(self, name: str):  # isatty, fileno, encoding, closed, buffer: the stream's own
        return getattr(self.stream, name)


@contextmanager
def guarded_streams() -> Iterator[GuardedStream | None]:
    """sys.stdout and sys.stderr as GuardedStreams while the block runs (each one that is open; None is left None,
    as `closed_stdout` reads it); the guarded stdout, or None, is yielded: one that holds what is printed when it is
    no terminal (the caller releases it as the command ends). The streams are put back after."""
    stdout, stderr = sys.stdout, sys.stderr
    guarded_out = None if stdout is None else GuardedStream(stdout, drops_errors=False, holds=not is_tty(stdout))
    sys.stdout = guarded_out or stdout
    sys.stderr = None if stderr is None else GuardedStream(stderr, drops_errors=True)
    try:
        yield guarded_out
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def is_tty(stream) -> bool:
    """Whether `stream` is a terminal, by its own isatty: a closed stream, or none (sys.stdout of a process started
    without one), is not."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed
        return False


def as_it_comes(line: str) -> None:
    """`line` on stdout, written at once with all stdout held before it (GuardedStream): a result a script reads as
    it comes (each clip written, each model pulled or verified), after which stdout holds nothing back."""
    print(line)
    if isinstance(sys.stdout, GuardedStream):
        sys.stdout.release()
    else:
        sys.stdout.flush()


def print_utf8(text: str) -> None:
    """`text` on stdout as UTF-8 bytes, whatever stdout's encoding (GuardedStream.write_bytes)."""
    if isinstance(sys.stdout, GuardedStream):
        sys.stdout.write_bytes(text.encode("utf-8"))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def shortened(line: str) -> str:
    """`line` with each value in it (a run without spaces: a path, a name, a number) over LONGEST_VALUE characters
    shown as its start and its end around its full length — a path's end, its file name, stays visible — and the
    whole over LONGEST_LINE shortened so: an error quoting a 15 MB name is one line still, not 15 MB of it."""
    if len(line) <= LONGEST_VALUE:
        return line
    line = _LONG_VALUE.sub(lambda found: _cut(found[0], LONGEST_VALUE), line)
    return _cut(line, LONGEST_LINE) if len(line) > LONGEST_LINE else line


def _cut(text: str, room: int) -> str:
    half = room // 2
    return f"{text[:half]}…({len(text):,} characters)…{text[-half:]}"


def path_text(path: object) -> str:
    """A path (or a name, or a whole line that holds some) as a message line shows it: a character that would split
    the line or drive the terminal — a newline, tab, ESC, any other control or unprintable one — as its escape (\\n,
    \\x1b), and a byte that is not UTF-8 as \\xNN. Linux allows all of them in a file name; one output stays one
    line. Spaces of every width and the invisible joiners of ordinary writing (U+200C in Persian, U+200D inside
    emoji) stay as they are; the bidirectional overrides, which reorder what is shown, do not. Text shown so
    already stays as it is (a backslash is printable): a line may be shown twice over."""
    text = str(path)
    if all(map(_shown, text)):
        return text
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte: escaped below like any unprintable one
        pass
    return "".join(c if _shown(c) else c.encode("unicode_escape").decode("ascii") for c in text)


def markup_text(text: object) -> str:
    """`text` (a path, a name, or a line naming some: an error) as a table cell or a line of rich markup shows it:
    escaped as every message shows a path (path_text), and taken as text, not markup (`[red]take.mp4`). Every
    value a rich table or console.print shows that mmgen did not write itself goes through here."""
    from rich.markup import escape

    return escape(path_text(text))


_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _shown(c: str) -> bool:
    """Whether a character is shown as itself: printable, a space of any width (Unicode's Zs: the ideographic
    space of Japanese names, macOS's narrow no-break space in "10.00.00 AM"), or an invisible format character (Cf:
    joiners, the soft hyphen) that neither breaks the line nor reorders it."""
    import unicodedata

    return c.isprintable() or unicodedata.category(c) == "Zs" or (
        unicodedata.category(c) == "Cf" and c not in _BIDI_CONTROLS)


def plain_wanted() -> bool:
    """NO_COLOR set (to anything but ""; no-color.org) or TERM=dumb: the person wants plain text on the terminal,
    with no escape sequence at all — no colour, no bold, no cursor hidden and shown or moved by progress bars."""
    import os

    return os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM", "").strip().lower() == "dumb"


def console(stderr: bool = True, **options) -> Console:
    """A rich console, as every mmgen line, table and bar is drawn through: with NO_COLOR (or TERM=dumb) one that
    writes no escape sequence (rich's own NO_COLOR drops colours but keeps bold and dim). What it is given to show
    is what its stream can hold (`held_by`) before it is measured: a table of "64→256" on an ASCII stream is laid
    out around "64->256", and its columns line up."""
    shown = _held_console()(stderr=stderr, **options, **({"color_system": None} if plain_wanted() else {}))
    return shown if options.get("width") else window_sized(shown)


@cache
def _held_console() -> type[Console]:
    """rich's Console, given what its stream can hold (`held_by`) to measure and draw."""
    from rich.console import Console

    class HeldConsole(Console):
        def render_str(self, text: str, **options):
            return super().render_str(held_by(text, self.encoding), **options)

    return HeldConsole


def on_terminal(console: Console) -> bool:
    """Whether `console` writes to a terminal: its stream's own isatty (or the force_terminal it was made with: a
    test's screen), not rich's is_terminal, which FORCE_COLOR (and TTY_COMPATIBLE=1) turn on for a pipe or a file.
    Those add colour only: a log still gets plain lines, never bars redrawn in place, and a table as wide as it
    needs, not an 80-column terminal's. A terminal rich will not draw on (TTY_COMPATIBLE=0, FORCE_COLOR= empty:
    its is_terminal off) is none either: bars chosen there were never drawn, and no progress showed at all."""
    forced = getattr(console, "_force_terminal", None)
    if forced is not None:
        return forced
    return is_tty(console.file) and console.is_terminal


def draws(console: Console) -> bool:
    """Whether progress may be bars redrawn in place on `console` (a terminal that wants more than plain text);
    otherwise it is plain lines."""
    return on_terminal(console) and not plain_wanted()


def table_console(stderr: bool = True) -> Console:
    """Where tables go: a terminal at its own width; a pipe or a file as wide as the table, where rich would
    fold every cell to 80 columns and break the names, hashes and URLs a script or a bug report needs whole (a row
    is a line: `mmgen models list | grep landscape`), and no line padded with spaces to that width (a title's)."""
    shown = console(stderr, highlight=False)
    if on_terminal(shown):
        return shown
    return console(stderr, highlight=False, width=WIDTH_WHEN_PIPED, file=_Unpadded(shown.file))


class _Unpadded:
    """A stream whose lines are written without the spaces that end them (rich writes whole lines)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(re.sub(r" +((?:\x1b\[[0-9;]*m)*)(?=\n)", r"\1", text))  # before a colour's end too
        return len(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding: the stream's own
        return getattr(self.stream, name)


def show_table(console: Console, table: Table, entries: list[tuple[str, ...]], indent: str = "") -> bool:
    """`table` where the terminal can hold it (its narrowest drawing, every short cell whole, fits); on a narrower
    one — where rich would cut each cell to a few characters, or draw an empty frame — its title (if it has one),
    then each entry on a line of its own, after `indent`: "NAME: cell · cell · … — last cell" (the terminal wraps a
    long one), each part of it that is a cell of the table's row in that cell's style (a status's colour; plain
    where the console has no colour). Whether it was the table."""
    from rich.text import Text

    if fits(console, table):
        console.print(table)
        return True
    if table.title:
        console.print(f"{table.title}:", highlight=False, soft_wrap=True)  # markup, as the table draws its title
    rows = list(zip(*(column.cells for column in table.columns), strict=True))
    for number, (name, *cells, last) in enumerate(entries):
        row = {shown.plain: shown for shown in map(_cell_text, rows[number] if number < len(rows) else ())}
        parts = [row.get(path_text(part)) or Text(path_text(part)) for part in (name, *filter(None, cells), last)]
        line = Text(indent) + parts[0] + ": " + Text(" · ").join(parts[1:-1]) + (Text(" — ") + parts[-1] if last else "")
        console.print(line, highlight=False, soft_wrap=True)
    return False


def _cell_text(cell: object) -> Text:
    """A table cell (markup, or rich Text) as the Text it draws, styles and all."""
    from rich.text import Text

    return cell.copy() if isinstance(cell, Text) else Text.from_markup(str(cell))


def fits(console: Console, table: Table) -> bool:
    """Whether `console` is wide enough for `table` drawn with every short cell whole (`_narrowest`)."""
    return _narrowest(table, console.encoding) <= console.width


FOLDED_AT_LEAST = 20  # columns a folded cell (a description) needs to be read; shorter ones whole


def _narrowest(table: Table, encoding: str) -> int:
    """The fewest columns `table` can be drawn in and read: each unbroken (no_wrap) column as wide as its widest
    cell (as a stream of `encoding` holds it: `held_by`), each folded one as its longest cell up to FOLDED_AT_LEAST,
    plus the frame (the rules, where it has a box, and each cell's padding). Rich would squeeze it into any width,
    cutting every cell."""
    from rich.cells import cell_len
    from rich.text import Text

    def shown(cell) -> str:
        return held_by(cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain, encoding)

    def widest(column) -> int:
        return max(cell_len(line) for cell in [column.header, *column.cells] for line in shown(cell).splitlines() or [""])

    _, right, _, left = table.padding
    padding = (left + right) * len(table.columns) - (0 if table.pad_edge else left + right)
    rules = (len(table.columns) - 1 + (2 if table.show_edge else 0)) if table.box else 0
    return sum(widest(c) if c.no_wrap else min(widest(c), FOLDED_AT_LEAST) for c in table.columns) + padding + rules


def listed(names: list[str], limit: int) -> str:
    """The first `limit` names, and how many more: "a, b, c and 4 more"."""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more:,} more" if more > 0 else "")


def counted(n: int, noun: str) -> str:
    """"1 job", "3 jobs", "2 processes": a count and its noun, in the plural unless one."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


def number_text(value: object) -> str:
    """A setting's value as a person writes it: 2 and 1000000000, not 2.0 and 1000000000.0 (nor 1e+09) for a float
    that is whole (a flag's float reads `--lora-alpha 2` as 2.0) and written in full by str (below 1e16); anything
    else as str gives it: 1e+308, not the 309 digits of int(1e308)."""
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 1e16
    return str(int(value)) if whole else str(value)


def rate_text(fps: float) -> str:
    """A frame rate for people, to the thousandth without trailing zeros: 30000/1001 is "29.97", 24000/1001
    "23.976", 10 "10" (`:.3g` rounds NTSC rates to the whole ones they are not, `:g` shows 29.97002997)."""
    return f"{fps:.3f}".rstrip("0").rstrip(".")


_SIZE_UNITS = (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12))  # then PB


def size_text(n: int | None, approximate: bool = False) -> str:
    """Bytes for people, in decimal units as disks and download pages count them; `approximate`: a "~". The unit is
    the smallest in which the value, as shown (to a tenth), is under 1000: 999,960 bytes are "1.0 MB", not
    "1000.0 kB"."""
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    tilde = "~" if approximate else ""
    for unit, scale in _SIZE_UNITS:
        if float(shown := f"{n / scale:.1f}") < 1000:
            return f"{tilde}{shown} {unit}"
    return f"{tilde}{n / 1e15:.1f} PB"  # the largest unit, however many


def short_hash(sha256: str | None) -> str:
    """The first 12 hex digits of a sha256, enough to tell files apart at a glance."""
    return f"{sha256[:12]}…" if sha256 else ""


def hashes_text(sha256: str | None, source_sha256: str | None) -> str:
    """A model's sha256 for a table cell: its weights file's, and on a line of its own, labelled, the file's it was
    (or would be) converted from."""
    return "\n".join(filter(None, [short_hash(sha256), source_sha256 and f"source {short_hash(source_sha256)}"]))
