"""The lock of one cache entry's folder (a model's, an adapter's): exclusive across processes for whatever writes
or removes its files, and the moment a replacement killed half way is put back (files.put_back_kept)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from mmgen.errors import ConfigError
from mmgen.files import put_back_kept
from mmgen.temporaries import remove_leftovers
from mmgen.terminal import say


@contextmanager
def entry_lock(folder: Path, name: str, what: str, kept: tuple[Path, Path, Callable[[Path, Path], bool]]
               ) -> Iterator[None]:
    """Exclusive access to the folder of one cache entry — `what` ("model", "adapter") `name` — across processes, for
    everything that writes or removes its files; says so when it has to wait. Holding it, it first puts back the
    entry a replacement killed half way (kill -9, a power cut) took away — `kept`: the record file, the data file and
    whether a record describes a data file (files.put_back_kept), the entry every reader already finds
    (files.last_kept) — and removes what else the dead process left. A folder that holds nothing else when the
    work is done (a failed import, a removed entry) is deleted with its lock."""
    held = _acquire(folder, name)
    try:
        with suppress(OSError):
            if put_back_kept(*kept):
                say(f"mmgen: {name}: put back the {what} a killed `mmgen` was replacing")
        remove_leftovers(folder)
        yield
    finally:
        with suppress(OSError):  # best effort (a system that cannot delete an open file keeps it)
            if [p.name for p in folder.iterdir()] == [".lock"]:
                (folder / ".lock").unlink()
                folder.rmdir()
        os.close(held)  # lets go


def unwritable(folder: Path, error: OSError, where: str = "") -> ConfigError:
    """A cache folder that takes no files (exit 2): the user's to choose another."""
    return ConfigError(f"cache folder {folder} cannot be written{where}: {error.strerror or error}",
                       hint="set MMGEN_CACHE to a folder you can write to")



def _acquire(folder: Path, name: str) -> int:
    """The descriptor of `folder`'s lock file, held (made if missing, and the folder too); closing it lets go.

    A lock of mmgen's own (flock; filelock's does not show its descriptor): the last holder deletes the lock file
    with its folder as it leaves (`entry_lock`), so a process waiting on that file may come to hold it when it is no
    longer there, while one arriving later makes a new one and holds that; both would go on. Held, the file must be
    the one the lock's name names (`_held`), else it is let go and the one there now is taken."""
    said = []

    def waiting() -> None:
        if not said:
            say(f"mmgen: waiting for another mmgen process working on {name!r} ...")
            said.append(name)

    while True:
        fd = _open_lock(folder)
        if fd is not None and _held(fd, folder, waiting):
            return fd


def _open_lock(folder: Path) -> int | None:
    """An open descriptor of `folder`'s lock file, made if missing (and the folder too); None where the folder went
    away as it was opened (its last holder deleted it as it left). ConfigError (exit 2) where it cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Never through a symlink (ELOOP): what it points to is no file of mmgen's.
        return os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileNotFoundError as e:
        if folder.is_dir():  # it is there, and takes no files (/proc): an endless wait otherwise
            raise unwritable(folder, e) from None
        return None
    except OSError as e:
        raise unwritable(folder, e) from None


def _held(fd: int, folder: Path, waiting: Callable[[], object]) -> bool:
    """Lock the open lock file `fd` of `folder` — at once, or after `waiting()` once its holder lets go — and whether
    it is still the file at the lock's name; if not (its holder deleted it as it left), `fd` is closed: False."""
    try:
        if not _lock_descriptor(fd, wait=False):
            waiting()
            _lock_descriptor(fd, wait=True)
        with suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.lstat(folder / ".lock")):
                return True
    except OSError as e:
        os.close(fd)
        raise unwritable(folder, e) from None
    except BaseException:  # Ctrl-C while waiting
        os.close(fd)
        raise
    os.close(fd)
    return False


def _lock_descriptor(fd: int, wait: bool) -> bool:
    """Lock the whole open file `fd` for this open file alone (flock; Windows: its first byte), waiting for the
    holder if `wait`; False where another holds it and `wait` is not set."""
    if os.name == "nt":  # no flock; a file open there cannot be deleted either
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.1)
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True
