"""Atomic outputs: a file appears complete under its final name, or not at all (DESIGN §8).

Writers work on a temporary file beside the target (same directory, so `os.replace` is an atomic rename on
one filesystem; same extension, so muxers infer the format) and move it into place only on success.
`check_writable` lets a command refuse early, before minutes of sampling, when the output cannot be written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmgen.errors import MediaError, OutputExists


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise now if `path` cannot become an output: OutputExists (unless `overwrite`), or MediaError when
    its directory is missing, not a directory, or not writable. Returns the path as a Path."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise MediaError(f"cannot write {target}: it is a directory")
    if target.exists() and not overwrite:
        raise OutputExists(f"{target} already exists", hint="pass --overwrite to replace it")
    if folder.exists() and not folder.is_dir():
        raise MediaError(f"cannot write {target}: {folder} is a file, not a directory")
    if not folder.is_dir():
        raise MediaError(f"cannot write {target}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"cannot write {target}: directory {folder} is not writable")
    return target


def temporary_name(target: Path) -> Path:
    """A hidden, per-call unique sibling of `target` with the same extension (a shared temporary name
    would let two concurrent writers corrupt each other's file)."""
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.partial{target.suffix}")


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on normal exit it replaces `path`, on any exception it is deleted.

    with atomic_output("clip.mp4") as tmp:
        write_everything_to(tmp)
    """
    target = check_writable(path, overwrite)
    temp = temporary_name(target)
    try:
        yield temp
        if not temp.exists():
            raise MediaError(f"cannot write {target}: nothing was written")
        if target.exists() and not overwrite:  # appeared while we were writing
            raise OutputExists(f"{target} already exists", hint="pass --overwrite to replace it")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
