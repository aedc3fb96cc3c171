"""The lock of one cache entry's folder (a model's, an adapter's): exclusive across processes for whatever writes
or removes its files, and the moment a replacement killed half way is put back (kept_states.put_back_kept). The lock
itself is mmgen.locks'."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from mmgen.errors import ConfigError
from mmgen.kept_states import put_back_kept
from mmgen.lock_holders import holder
from mmgen.locks import acquire
from mmgen.temporaries import not_running, remove_leftovers
from mmgen.terminal import say


@contextmanager
def entry_lock(folder: Path, name: str, what: str, kept: tuple[Path, Path, Callable[[Path, Path], bool]]
               ) -> Iterator[None]:
    """Exclusive access to the folder of one cache entry — `what` ("model", "adapter") `name` — across processes, for
    everything that writes or removes its files; says so when it has to wait. Holding it, it first puts back the
    entry a replacement killed half way (kill -9, a power cut) took away — `kept`: the record file, the data file and
    whether a record describes a data file (kept_states.put_back_kept), the entry every reader already finds
    (kept_states.last_kept) — and removes what else the dead process left. A folder that holds nothing else when the
    work is done (a failed import, a removed entry) is deleted with its lock (the folder made again by the next)."""
    try:
        lock = acquire(folder / ".lock", lambda: say(f"mmgen: waiting for another mmgen process{_by(folder)} working on "
                                                     f"{name!r} ..."), make_folder=True)
    except OSError as e:
        raise unwritable(folder, e) from None
    try:
        with suppress(OSError):
            if put_back_kept(*kept):
                say(f"mmgen: {name}: put back the {what} a killed `mmgen` was replacing")
        remove_leftovers(folder)
        yield
    finally:
        with suppress(OSError):  # best effort
            if [p.name for p in folder.iterdir()] == [".lock"]:
                lock.remove()
                folder.rmdir()
        lock.release()


def remove_files(folder: Path, files: list[Path]) -> bool:
    """Delete an entry's `files` (in order: its record first, so a half-deleted entry no longer counts) and what
    killed writers left in its `folder` — temporaries of any mmgen, from any container or host, for every writer of
    the entry holds its lock, as the caller must — but a running one's here (temporaries.not_running); the folder
    goes with the lock where nothing else is left (`entry_lock`). True if anything was deleted."""
    found = False
    for path in [*files, *not_running(folder)]:
        if path.is_dir() and not path.is_symlink():  # a damaged entry: a folder where a file belongs
            shutil.rmtree(path)
            found = True
        elif path.exists() or path.is_symlink():  # a link (even one to nowhere) goes, never its target
            path.unlink()
            found = True
    return found


def unwritable(folder: Path, error: OSError, where: str = "") -> ConfigError:
    """A cache folder that takes no files (exit 2): the user's to choose another."""
    return ConfigError(f"cache folder {folder} cannot be written{where}: {error.strerror or error}",
                       hint="set MMGEN_CACHE to a folder you can write to")


def _by(folder: Path) -> str:
    """The waited-for process, as its lock file names it (` (mmgen models import, pid 1234)`), or nothing."""
    found = holder(folder / ".lock")
    return f" ({found})" if found else ""
