"""Output folders kept as they were found: inside a command (or a pipeline call of the Python API's), a folder the
command writes into stays the one found as the first output went into it. A folder replaced meanwhile — moved away,
a link to another folder put at its name — stops the command before anything more is written through its name:
never a file written, or overwritten, in whatever folder the name leads to now."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import NamedTuple

from mmgen.errors import FolderReplaced
from mmgen.output_checks import kind_of


class _Found(NamedTuple):
    identity: tuple[int, int] | None  # its device and inode as found (folder_identity)
    named: Path  # as the command was given it (`od`): what its lines call it


NO_LONGER_THERE = "is no longer there"  # a folder's name leads nowhere now: it was moved, renamed or removed

# The output folders a command writes into, as it found them (`same_folders`), by absolute path
_folders: ContextVar[dict[Path, _Found] | None] = ContextVar("files_same_folders", default=None)


@contextmanager
def same_folders() -> Iterator[Mapping[Path, _Found]]:
    """Inside the block (a command), every output folder (`keep_folder`) stays the one found as the first output
    went into it: a folder replaced meanwhile (moved away, a link to another folder put at its name) is a
    FolderReplaced (exit 1) before anything more is written through its name — never a file written, or overwritten, in
    whatever folder the name leads to now. A batch's manifest holds its folder to the same (batch.manifest). A block
    inside another's is part of it: the command's, and each pipeline call of the Python API's (calls.pipeline_call).
    Yields the folders as found, for `replaced_holding` once the block has ended (a command's stop, said after it)."""
    if (outer := _folders.get()) is not None:
        yield outer
        return
    found: dict[Path, _Found] = {}
    token = _folders.set(found)
    try:
        yield found
    finally:
        _folders.reset(token)


def keep_folder(folder: Path) -> None:
    """Record `folder` (just made, or found) as an output folder of the `same_folders` block, the first time; check
    that it is still the one recorded every later time."""
    found = _folders.get()
    if found is None:
        return
    key = Path(os.path.abspath(folder))
    if key not in found:
        found[key] = _Found(folder_identity(key), folder)
    else:
        check_folders(key / "-")


def check_folders(target: Path) -> None:
    """FolderReplaced if an output folder holding `target` (its own or one above it) is no longer the one recorded."""
    found = _folders.get()
    if not found:
        return
    for folder in Path(os.path.abspath(target)).parents:
        if folder in found and folder_identity(folder) != found[folder].identity:
            raise _replaced(folder, found[folder].named)


def replaced_holding(paths: Iterable[Path], found: Mapping[Path, _Found] | None = None) -> FolderReplaced | None:
    """The FolderReplaced of the highest output folder holding one of `paths` that is no longer the one found, or
    None: what a stop's line and a batch's summary say of the outputs that went with it (check_folders raises it
    before a write). `found`: the folders of a block that has ended (same_folders); else the running block's."""
    found = _folders.get() if found is None else found
    if not found:
        return None
    holding = {folder for path in paths for folder in Path(os.path.abspath(path)).parents if folder in found}
    for folder in sorted(holding, key=lambda folder: len(folder.parts)):
        if folder_identity(folder) != found[folder].identity:
            return _replaced(folder, found[folder].named)
    return None


def _replaced(folder: Path, named: Path) -> FolderReplaced:
    """The FolderReplaced for `folder` (absolute; `named` as the command was given it), saying what is at its name
    now: another folder, something else, nothing (a name leading through a link that may be what replaced a folder
    above it: "was replaced", as a folder). Nothing there is not "removed": a folder renamed (`mv out out-old`) leaves
    its name as empty as one deleted, and mmgen cannot tell where it went."""
    gone = not os.path.lexists(folder)
    if os.path.isdir(folder) or (gone and any(os.path.islink(above) for above in folder.parents)):
        what = f"{named} was replaced while mmgen wrote into it"
        return FolderReplaced(f"{what}; stopped",
                              hint="what was written before is in the folder that was there; nothing was "
                                   "written into the one there now", folder=folder,
                              went="are in the folder that was there, not in the one there now",
                              then="nothing was written into the one there now", what=what)
    said = (f"{NO_LONGER_THERE} (moved, renamed or removed while mmgen wrote into it)" if gone
            else f"is {kind_of(folder)} now, not a folder (replaced while mmgen wrote into it)")
    return FolderReplaced(f"{named} {said}; stopped",
                          hint="what was written before went where that folder went; nothing more was written",
                          folder=folder, went="went with it" if gone else "went with the folder that was there",
                          then="nothing more was written", what=f"{named} {said}")


def forget_folder(folder: Path) -> None:
    """`folder` was removed by the command itself (it held nothing): a later one at its name is found anew."""
    found = _folders.get()
    if found is not None:
        found.pop(Path(os.path.abspath(folder)), None)


def folder_identity(folder: Path) -> tuple[int, int] | None:
    """Which folder `folder` leads to (links followed): its device and inode, or None where there is none — nothing,
    or something else than a folder: a file put at a removed folder's name may be given its inode (tmpfs hands a
    freed inode straight back), and is no folder of the same identity."""
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None
