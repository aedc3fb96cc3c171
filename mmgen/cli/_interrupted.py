"""What a command stopped by Ctrl-C says: one line naming what it kept. Outputs are written atomically and
their sidecar last, so every output is either finished and kept, or not there at all; a command that keeps
something else (a partial download) says so with `left_behind`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.cli.app import invoked
from mmgen.pipelines.outputs import recording
from mmgen.terminal import say

WRITERS = ("generate", "soundtrack", "animate", "retake", "batch")  # commands whose outputs `recording` sees
LISTED = 3  # outputs named in the line; more are counted
_left: ContextVar[str | None] = ContextVar("interrupted_left_behind", default=None)


@contextmanager
def finished_outputs() -> Iterator[list[Path]]:
    """The mp4 of every output finished while the block runs."""
    _left.set(None)
    with recording() as finished:
        yield finished


def left_behind(what: str) -> None:
    """What the running command, stopped by Ctrl-C just now, leaves behind: its line says this instead."""
    _left.set(what)


def say_interrupted(finished: list[Path]) -> None:
    say(f"mmgen: {interrupted_line(invoked.get(), finished)}")


def interrupted_line(command: str | None, finished: list[Path]) -> str:
    if _left.get() is not None:
        return f"interrupted; {_left.get()}"
    if finished:
        names = ", ".join(map(str, finished[:LISTED])) + (f" and {len(finished) - LISTED} more"
                                                          if len(finished) > LISTED else "")
        count = "the finished output" if len(finished) == 1 else f"the {len(finished)} finished outputs"
        return f"interrupted; kept {count}: {names}"
    return "interrupted; nothing written" if command in WRITERS else "interrupted"
