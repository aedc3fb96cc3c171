"""Folders a command makes for its outputs go again when it fails having written nothing worth keeping in them: a run
that wrote nothing leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from mmgen.output_folders import forget_folder


@contextmanager
def new_folders_removed_on_failure(
    folders: Iterable[Path], clear: Callable[[Path], object] | None = None
) -> Iterator[None]:
    """The `folders` that do not exist yet (and their parents that do not) are removed again if the block fails
    while they hold nothing worth keeping — they are empty, once `clear` (if given) has removed from each the files
    its command wrote there that are not worth keeping (and nothing else): a run that wrote nothing leaves nothing
    behind. A folder that existed before stays whole, and so does one holding an output or anything else, or one
    `clear` returns False for (another process has taken it meanwhile)."""
    new: set[Path] = set()
    for folder in folders:
        while not folder.exists() and folder.parent != folder:
            new.add(folder)
            folder = folder.parent
    try:
        yield
    except BaseException:
        for folder in sorted(new, key=lambda f: len(f.parts), reverse=True):  # the deepest first
            with suppress(OSError):  # not empty, or already gone
                if clear is not None and folder.is_dir() and not folder.is_symlink() and clear(folder) is False:
                    continue
                folder.rmdir()
                forget_folder(folder)
        raise
