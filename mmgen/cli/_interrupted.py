"""What a command stopped by Ctrl-C (or SIGTERM, SIGHUP), or by the machine (a full disk, no memory left), says: one
line naming what it kept. Outputs are written atomically and their sidecar last, so every output is either finished
and kept, or not there at all; a command that keeps something else (a partial download) says so with `left_behind`."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.cli import WRITERS, command_named, nothing_kept  # WRITERS: commands whose outputs `recording` sees
from mmgen.cli.app import arguments, invoked
from mmgen.errors import FolderReplaced, MmgenError, ResourceError, StorageError
from mmgen.output_folders import replaced_holding, same_folders
from mmgen.pipelines.outputs import recording
from mmgen.runtime.stop_signals import stop_name
from mmgen.terminal import listed, path_text, say

LISTED = 3  # outputs named in the line; more are counted
_left: ContextVar[str | None] = ContextVar("interrupted_left_behind", default=None)
_whose: ContextVar[str] = ContextVar("interrupted_whose", default="")  # speaks_for's: "rank 1", or "" for the command
_finished: list[Path] = []  # of the last command: a stop during shutdown still names them
_folders: Mapping[Path, object] = {}  # the output folders of the last command, as found (output_folders.same_folders)


@contextmanager
def finished_outputs() -> Iterator[list[Path]]:
    """The mp4 of every output finished while the block runs, in output folders kept as found (a command's:
    output_folders.same_folders), so that a stop names those whose folder left its name as what went with it."""
    global _finished, _folders
    _left.set(None)
    _whose.set("")
    with recording() as finished, same_folders() as folders:
        _finished, _folders = finished, folders
        yield finished


def left_behind(what: str) -> None:
    """What the running command, stopped by Ctrl-C just now, leaves behind: its line says this instead."""
    _left.set(what)


def speaks_for(whose: str) -> None:
    """The process ("rank 1") whose own share of the work the running command's stop line speaks for, where each
    process of a torchrun job has its own (a batch's jobs): the line says so, as its summary does."""
    _whose.set(whose)


def stdout_failed_line(e: OSError) -> str | None:
    """What a command says when its standard output could not be written (mmgen.terminal.GuardedStream): its reader
    went away (EPIPE), or the OS refused the write (a full disk: /dev/full). One that writes files names those it
    kept, as a stop's line does (each is written whole or not at all); one that only prints (--help,
    `models list --json | head -c1`) says nothing of a reader that chose to stop reading, and why it could not
    write otherwise."""
    writes = invoked.get() in (*WRITERS, "finetune")
    if e.errno == errno.EPIPE:
        if not writes:
            return None
        return "stdout was closed by the program reading it (broken pipe); " + (
            _kept_where(_finished) if _finished else "the files written are complete")
    return f"cannot write to standard output: {e.strerror or e}" + (
        f"; {_kept_where(_finished)}" if writes and _finished else "")


def say_interrupted(code: int, unprinted: bool = False) -> None:
    """The line of the last command, stopped with exit `code` (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Under torchrun
    every process is stopped: one that names nothing of its own (no output it finished, nothing it leaves behind —
    finetune's ranks but 0) leaves the line to rank 0, as a shared error is (MmgenError.every_process) — unless it
    was stopped waiting for the others to join (torchrun.waiting): then it is alone, and says its own. `unprinted`:
    standard output (a pipe, a file) held all the command printed, to write it in one write as it ended
    (terminal.GuardedStream), and the stop dropped it: the line says nothing was written there, so that an empty
    `mmgen models list > models.txt` is not taken for an empty list."""
    from mmgen.cli import _rank
    from mmgen.runtime import torchrun

    if _rank() != 0 and _left.get() is None and not _finished and not torchrun.waiting:
        return
    line = interrupted_line(invoked.get(), _finished, stop_name(code))
    line = f"{_whose.get()}: {line}" if _whose.get() else line
    say(f"mmgen: {line}; nothing written to standard output" if unprinted else f"mmgen: {line}")


def interrupted_line(command: str | None, finished: list[Path], by: str = "") -> str:
    """`by`: which signal, when not Ctrl-C (" (SIGTERM)")."""
    if _left.get() is not None:
        return f"interrupted{by}; {_left.get()}"
    if finished:
        return f"interrupted{by}; {_kept_where(finished)}"
    return nothing_kept(command or command_named(arguments.get()), by)  # None: stopped before typer parsed it


def kept(finished: list[Path]) -> str:
    """What a command stopped with `finished` outputs keeps, in the stop's line (or a failure's: failed_line)."""
    names = listed([path_text(f) for f in finished], LISTED)
    return f"kept {'the finished output' if len(finished) == 1 else f'the {len(finished)} finished outputs'}: {names}"


def _kept_where(finished: list[Path]) -> str:
    """kept(finished) — or, where an output folder left its name as the command ran (moved, renamed, removed,
    replaced: output_folders.replaced_holding), what became of it and which outputs went with it, as failed_line says."""
    gone = replaced_holding(finished, _folders)
    return kept(finished) if gone is None else f"{gone.what}; {_went_with(gone, finished)}"


def failed_line(error: MmgenError) -> str:
    """The line of the last command, failed with `error`: where the machine stopped it (a full disk, no memory
    left) after some outputs were finished, it says which it kept, as a stop's line does (they are whole); an output
    folder gone from its name (FolderReplaced), which of them went with it, named inside it."""
    if not isinstance(error, (StorageError, ResourceError)) or not _finished:
        return str(error)
    if not isinstance(error, FolderReplaced) or not any(_inside(f, error.folder) for f in _finished):
        return str(MmgenError(f"{error.message}; {kept(_finished)}", error.hint))
    return str(MmgenError(f"{error.message}; {_went_with(error, _finished)}", error.then))


def _inside(output: Path, folder: Path) -> bool:
    return folder in Path(os.path.abspath(output)).parents


def _went_with(gone: FolderReplaced, finished: list[Path]) -> str:
    """Which of the `finished` outputs went with the folder `gone` names, named inside it (its name no longer leads
    to them: it was moved, renamed, removed or replaced), then those kept elsewhere."""
    inside = [f for f in finished if _inside(f, gone.folder)]  # gone, or moved, with it
    outside = [f for f in finished if f not in inside]
    names = listed([path_text(Path(os.path.abspath(f)).relative_to(gone.folder)) for f in inside], LISTED)
    went = f"{'the finished output in it' if len(inside) == 1 else f'the {len(inside)} finished outputs in it'} " \
           f"{gone.went.replace('are ', 'is ', 1) if len(inside) == 1 else gone.went}: {names}"
    return went + (f"; {kept(outside)}" if outside else "")
