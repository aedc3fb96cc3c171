"""Notes about an input file that the user should hear of but that stop nothing (surround mixed to mono, extra
streams left out, sound above full scale), and about what is written (`said_once`): one line per file for a command that reads one file, one line per
kind of note for a command that reads a folder of them (finetune), where a line per file would crowd the display.
Each is said once per call (`one_call`: a command, a pipeline function's call, a batch), not once per process: a
program that calls `soundtrack` twice on clips that each deserve a note hears it twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.terminal import listed, path_text

NAMES_SHOWN = 3  # files named in a gathered note; the rest are counted

# A library logs, it does not print: mmgen's notes go to the caller's logging setup, and with none, nowhere (not
# stderr, through Python's last-resort handler). The command line shows them on its stderr (mmgen.cli.
# notes_on_stderr). Set here, where mmgen's loggers come from, not in the package's __init__: that one imports
# nothing, for the command's sake (mmgen.entry).
logging.getLogger("mmgen").addHandler(logging.NullHandler())


class _OneLine(logging.Filter):
    """A note as one line, its file names shown as every message shows them (terminal.path_text): a name's newline or
    ESC escaped, a byte that is not UTF-8 as \\xNN."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = path_text(record.getMessage()), None
        return True


def logger(name: str) -> logging.Logger:
    """The logger of a module of mmgen's that tells the user notes (stderr, as warnings): each one line (_OneLine)."""
    named = logging.getLogger(name)
    if not any(isinstance(f, _OneLine) for f in named.filters):
        named.addFilter(_OneLine())
    return named


log = logger(__name__)
_said: set[str] = set()  # what was said outside any call (a module's own function called from Python): once a process
_call_said: ContextVar[set[str] | None] = ContextVar("mmgen_notes_said", default=None)  # what the open call said
_gathered: ContextVar[dict[str, list[str]] | None] = ContextVar("mmgen_notes_gathered", default=None)  # while
# gathering: what is noted → the files it was noted of (the gathering thread's own: two threads building clip datasets
# at once — a Python program's, or a test's two ranks — each gather theirs)
_held: dict[str, tuple[float, int, Callable[[float, int], str]]] | None = None  # while held back: what is noted →
# (the highest value noted, how many times, its line)


@contextmanager
def one_call(said: set[str] | None = None) -> Iterator[None]:
    """The block is one call: each note is said once in it (a command reads a file several times), and again in the
    next call. A block inside another's is part of it (a batch's jobs, a command's pipeline call: one note). `said`:
    what an earlier call of the same work said (`said_in_call` then), which this one goes on from — a batch planned
    in one call and run in another says each note once."""
    if _call_said.get() is not None:
        yield
        return
    token = _call_said.set(set() if said is None else said)
    try:
        yield
    finally:
        _call_said.reset(token)


def said_in_call() -> set[str]:
    """The open call's notes said so far, which a later call may go on from (`one_call(said=)`); a new set outside
    any call."""
    said = _call_said.get()
    return set() if said is None else said


def _said_here() -> set[str]:
    """What was said in the open call (one_call), else in this process outside any call."""
    said = _call_said.get()
    return _said if said is None else said


_remarks_kept: ContextVar[list[str] | None] = ContextVar("mmgen_remarks_kept", default=None)  # while kept: said later


def remark(line: str) -> None:
    """Tell the user `line` (stderr, as a warning) once per call (one_call), as `note` does, of no file: a setting
    that works but is a poor choice here (fp16 on a CPU). Inside `remarks_kept`, kept for the caller to say."""
    if (kept := _remarks_kept.get()) is not None:
        if line not in kept:
            kept.append(line)
    elif line not in (before := _said_here()):
        before.add(line)
        log.warning(line)


@contextmanager
def remarks_kept() -> Iterator[list[str]]:
    """The block's remarks kept in the list it gives, not said: a batch's planning, which may yet refuse the batch
    (a remark on how it would run is noise then); running it says them (`remark`)."""
    token = _remarks_kept.set([])
    try:
        yield _remarks_kept.get()
    finally:
        _remarks_kept.reset(token)


def note(path: str | os.PathLike, line: str, about: str) -> None:
    """Tell the user "`path`: `line`" (stderr, as a warning) once per call (one_call): one command reads a file
    several times. While `gathered_notes` is open, the file is listed under `about` (what the note says of any file,
    e.g. "surround audio mixed to mono") instead, to be said once for all of them."""
    if (gathered := _gathered.get()) is not None:
        files = gathered.setdefault(about, [])
        if os.fspath(path) not in files:
            files.append(os.fspath(path))
        return
    said, before = f"{os.fspath(path)}: {line}", _said_here()
    if said not in before:
        before.add(said)
        log.warning(said)


def said_once(about: str, line: Callable[[float, int], str], worst: float) -> None:
    """Tell the user `line(worst, 1)` (stderr, as a warning) the first time `about` is noted in this call: a note
    about what a command writes, alike for each file it writes (the sound clipped at full scale), said once. While
    `held_back` is open, it is said as the block ends instead, once for all the times it was noted there:
    `line(the highest worst, times)`, of the line noted with it — the loudest clip's peak, not the first's."""
    if _held is not None:
        highest, times, said = _held.get(about, (worst, 0, line))
        _held[about] = (worst, times + 1, line) if worst >= highest else (highest, times + 1, said)
    elif about not in (before := _said_here()):
        before.add(about)
        log.warning(line(worst, 1))


@contextmanager
def held_back(of: str = "") -> Iterator[None]:
    """Hold the `said_once` notes of the block (a command's: mmgen.cli) until it ends, however it ends, then say
    each once, for all the files it was noted of (whether or not it was said before: one command, one note). `of`:
    what the block is, said before each of its notes (a batch's job: its notes with it, not after the batch)."""
    global _held
    outer, _held = _held, {}
    try:
        yield
    finally:
        held, _held = _held, outer
        for about, (worst, times, line) in held.items():
            _said_here().add(about)
            log.warning(of + line(worst, times))


@contextmanager
def gathered_notes(root: Path | None = None) -> Iterator[list[str]]:
    """Gather the notes of the files read inside the block; the list it gives is filled, on leaving, with one
    line per kind of note: "3 files: surround audio mixed to mono (a.mp4, b.mp4, c.mp4)", with names relative
    to `root` and at most NAMES_SHOWN of them ("… and 9 more")."""
    gathered: dict[str, list[str]] = {}
    token = _gathered.set(gathered)
    lines: list[str] = []
    try:
        yield lines
    finally:
        _gathered.reset(token)
        lines += [_summary(about, files, root) for about, files in gathered.items()]


def gathered_so_far() -> dict[str, list[str]]:
    """The notes gathered so far in the open gathered_notes block — what is noted → the files it was noted of — as
    plain data another process can have (the processes of a torchrun job decoding a folder's clips, each a share)."""
    return {about: list(files) for about, files in (_gathered.get() or {}).items()}


def gather_in(every: list[dict[str, list[str]]], order: list[Path]) -> None:
    """Make the open gathered_notes block's notes those of every process of a job (each one's gathered_so_far, its
    own among them): each file once, listed in `order` (the folder's), and each kind of note where its first file
    is, as one process reading the whole folder lists them."""
    gathered = _gathered.get()
    place = {os.fspath(path): i for i, path in enumerate(order)}

    def where(file: str) -> int:
        return place.get(file, len(place))

    for notes in every:
        for about, files in notes.items():
            known = gathered.setdefault(about, [])
            known += [file for file in files if file not in known]
    ordered = sorted(gathered.items(), key=lambda kind: min(map(where, kind[1])))
    gathered.clear()
    gathered.update((about, sorted(files, key=where)) for about, files in ordered)


def _summary(about: str, files: list[str], root: Path | None) -> str:
    names = listed([_name(f, root) for f in files], NAMES_SHOWN)
    return f"{len(files):,} file{'s' if len(files) != 1 else ''}: {about} ({names})"


def _name(file: str, root: Path | None) -> str:
    """The file's path below `root` (else as given), shown as every message shows a path (terminal.path_text)."""
    path = Path(file)
    if root is not None and path.is_relative_to(root):
        path = path.relative_to(root)
    return path_text(path)
