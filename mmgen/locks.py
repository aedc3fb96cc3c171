"""Lock files: the one way mmgen keeps other processes (and its own other threads) out of work that must have one
holder at a time — a cache entry's folder (weights.entry_lock), the decoding of one clip, a batch's output folder, a
record file being rewritten.

A lock is the OS's lock on a lock file opened for that one hold (Linux: an open file's lock of one byte chosen by
the lock's folder and name, beside a shared flock — `_lock_descriptor`; other POSIX systems: flock; Windows: msvcrt's
lock of its first byte), so the kernel lets go when the holder closes it or exits, however it exits (Ctrl-C,
kill -9): no lock is ever left stale. A holder may delete its lock file as it leaves (`Held.remove`, before letting
go: thousands of clips must not leave thousands of lock files): a process waiting on that file then comes to hold a
file no longer there, while one arriving later makes a new one and holds that — both would go on. So, once held,
the file must still be the one at the lock's name (the same device and inode), else it is let go and the one there
now is taken. A held lock also holds its folder with a shared flock (`_folder_shared`), so an older mmgen that would
replace a lock file shared with a `cp -al` copy waits instead.

A holder writes itself into the lock file (mmgen.lock_holders), so one refused or kept waiting can say whom it waits
for; a forked child closes the lock descriptors it inherits (`held_here`), so the lock goes with its holder, not with
the last of its children.

A lock file is never opened through a symbolic link (what it points to is no file of mmgen's), one that is no
regular file (a FIFO, whose holder's line a refused process waited to read until the holder ended) is refused at
once, naming it, and one that cannot be made is an OSError at once, never a wait (/proc refuses a new file with "no such file", which looks like a lock
file its holder just deleted). One there that this process may not open, in a folder it may write into (root's,
another user's under umask 077), is LockFileRefused: named, with what to do, not blamed on the folder.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mmgen.errors import MmgenError, UsageError
from mmgen.file_modes import keep_mode
from mmgen.lock_holders import Holder, flock_holder, holder, name_holder

WINDOWS = os.name == "nt"  # no flock there: msvcrt's lock, polled (tests set it to drive that branch with a fake)
POLL_S = 0.1  # Windows: how long a waiter sleeps between tries
_HELD: set[int] = set()  # this process's open lock descriptors (held_here): a forked child closes its copies


def held_here(fd: int) -> int:
    """`fd`, an open lock descriptor (a lock file's, a run folder's), kept by this process alone: a forked child (a
    DataLoader worker) closes its copy as it starts. flock's lock belongs to the open file, which a child shares, so
    the lock outlived a holder killed with kill -9 for as long as its workers did (~5 s, until they saw it gone)."""
    _HELD.add(fd)
    return fd


def let_go(fd: int) -> None:
    """Close the lock descriptor `fd` (held_here) — not where this is a forked child, which closed it already (the
    number may be another file's by now). Windows: unlocked first, which closing it does only "eventually"."""
    if fd not in _HELD:
        return
    if WINDOWS:
        with suppress(OSError):
            _windows_call(fd, "LK_UNLCK")
    _close(fd)


def _close(fd: int) -> None:
    """Close the lock descriptor `fd` and forget it (held_here), unlocking nothing first: one that holds no lock, or
    (not on Windows) one whose lock closing it lets go of."""
    _HELD.discard(fd)
    os.close(fd)


def _closed_in_child() -> None:
    for fd in _HELD:
        with suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_closed_in_child)


class LockFileRefused(UsageError):
    """A lock file this process may not open (another user's, or root's), in a folder it may write into: holding
    nothing once no mmgen runs there, it is the user's to delete (exit 2)."""


@dataclass(frozen=True)
class Held:
    """A held lock file: `fd` is its open descriptor, `path` its name."""

    path: Path
    fd: int
    folder: int | None = None  # its folder's shared flock (_folder_shared), or None

    def remove(self) -> None:
        """Delete the lock file while it is held, so no one comes to hold it after this holder (`_current`). Best
        effort: Windows cannot delete an open file, so it stays there."""
        with suppress(OSError):
            self.path.unlink()

    def release(self) -> None:
        let_go(self.fd)
        if self.folder is not None:
            let_go(self.folder)


@contextmanager
def file_lock(path: Path, waiting: Callable[[], object] = lambda: None, make_folder: bool = False
              ) -> Iterator[Held]:
    """Hold the lock of `path` for the block, waiting for its holder (after calling `waiting()` once) if another
    has it; the lock file is made if missing (its folder too with `make_folder`). OSError at once where it cannot
    be made or locked (a read-only folder, /proc)."""
    held = acquire(path, waiting, make_folder)
    try:
        yield held
    finally:
        held.release()


@contextmanager
def sole_holder(path: Path, busy: Callable[[Holder | None], MmgenError]) -> Iterator[None]:
    """Hold the lock of `path` for the block, or raise `busy(its holder)` at once if another process holds it (a
    batch's output folder). The lock file stays; its presence means nothing. OSError if it cannot be made."""
    held = _take(path, waiting=None)
    if held is None:
        raise busy(holder(path))
    try:
        yield
    finally:
        held.release()


def acquire(path: Path, waiting: Callable[[], object] = lambda: None, make_folder: bool = False) -> Held:
    """The lock file `path`, held — made if missing (and its folder with `make_folder`) — until its `release()`;
    if another holds it, `waiting()` and then wait for it. OSError at once where it cannot be made or locked."""
    held = _take(path, waiting, make_folder)
    assert held is not None  # it waited
    return held


def _take(path: Path, waiting: Callable[[], object] | None, make_folder: bool = False) -> Held | None:
    """As `acquire`, or None at once where another holds the lock and `waiting` is None."""
    said = False
    while True:
        fd = _open(path, make_folder)
        if fd is None:
            continue
        slot = _slot(path)
        if slot is None:  # its folder went as it was opened, with the file
            _close(fd)
            continue
        try:
            if not _lock_descriptor(fd, slot, wait=False):
                if waiting is None:
                    _close(fd)
                    return None
                if not said:
                    waiting()
                    said = True
                _lock_descriptor(fd, slot, wait=True)
        except BaseException:  # an OS error, or Ctrl-C while waiting
            _close(fd)
            raise
        folder = _folder_shared(path)
        if _current(fd, path):
            fd = _own(fd, path, slot)
            if not WINDOWS:  # (its locked byte is unreadable to others; a write moves msvcrt's lock)
                name_holder(fd)
            return Held(path, fd, folder)
        if folder is not None:
            let_go(folder)
        let_go(fd)  # its holder deleted it as it left: take the one there now


FOLDER_WAIT_S = 2.0  # the longest a lock waits for its folder's flock, which an older mmgen holds for one rename


def _folder_shared(path: Path) -> int | None:
    """The lock's folder, open with a shared flock for as long as the lock is held: an older mmgen (106cebc and
    before), finding the lock file a hard link (`cp -al` while this one ran), takes the folder's exclusive flock to
    rename a fresh file over the name and hold that — both then held the folder, and it swept this one's live
    temporaries. With the folder held shared it waits instead, until this lock is let go. Where this process holds
    the folder's exclusive flock itself (a training run's folder), or another holds it past FOLDER_WAIT_S or for a
    training run of this mmgen (`training_in`: no older mmgen's rename, which the wait is for), or it cannot be
    opened or flocked, None: the lock is held as before. Not on Windows (no flock)."""
    if WINDOWS:
        return None
    import fcntl

    try:
        folder = held_here(os.open(path.parent, os.O_RDONLY))
    except OSError:
        return None
    give_up = time.monotonic() + FOLDER_WAIT_S
    while True:
        try:
            fcntl.flock(folder, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return folder
        except BlockingIOError:
            if training_in(folder):  # a finetune of this mmgen's, held for the whole run: no rename to wait out
                break
            found = flock_holder(folder)
            if (found is not None and found.pid == os.getpid()) or time.monotonic() > give_up:
                break
            time.sleep(POLL_S / 10)
        except OSError:  # a filesystem without flock
            break
    _close(folder)
    return None


def mark_training(fd: int) -> None:
    """Mark the run folder `fd`, whose exclusive flock this process holds, as held by a training run of this mmgen:
    an open file's read lock of its byte 0 beside the flock, which no older mmgen takes (Linux; elsewhere nothing).
    A lock taken in that folder then knows its exclusive holder is no older mmgen renaming a lock file, and does
    not wait for it to let go (`_folder_shared`)."""
    import fcntl

    if hasattr(fcntl, "F_OFD_SETLK"):
        with suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, os.SEEK_SET, 0, 1, 0))


def training_in(fd: int) -> bool:
    """Whether the open folder `fd` is marked as a training run's (`mark_training`), by any process."""
    import fcntl

    if not hasattr(fcntl, "F_OFD_GETLK"):
        return False
    try:
        found = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0))
    except OSError:
        return False
    return struct.unpack("hhqqi", found)[0] != fcntl.F_UNLCK


def _open(path: Path, make_folder: bool) -> int | None:
    """An open descriptor of the lock file `path`, made if missing (never through a symlink: ELOOP, nor where it is
    no regular file: UsageError); None where its folder (made here with `make_folder`) went away as it was opened —
    its last holder deleted it as it left."""
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = held_here(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                               0o666))  # the umask decides, as for every file mmgen makes; a FIFO opens without a wait
    except FileNotFoundError:
        if make_folder and not path.parent.is_dir():
            return None
        raise  # the folder is there and takes no files (/proc): an endless wait otherwise
    except PermissionError as e:
        if os.path.lexists(path) and os.access(path.parent, os.W_OK):
            raise LockFileRefused(f"cannot open the lock file {path}: {e.strerror}",
                                  hint=f"if no mmgen is running in {path.parent}, delete it: it holds nothing") from None
        raise
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):  # (said by a writer as its output's, or as Errno 40)
            raise UsageError(f"{path} is a symbolic link, where mmgen keeps a lock file of its own",
                             hint="remove the link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO: its holder's line could not be read without a wait
        _close(fd)
        raise UsageError(f"{path} is not a regular file, where mmgen keeps a lock file of its own", hint="remove it")
    return fd


def _own(fd: int, path: Path, slot: int) -> int:
    """The lock file `fd`, held at `path`, or where it is a hard link (a project copied with `cp -al` shares it with
    the original) a fresh file put at its name, held before it is there, the shared one then let go: the holder's
    line (`_name_holder`) is then this folder's alone — the original's refusal named the copy's batch — and an older
    mmgen (one lock per file) no longer finds the other folder in use. Safe as the name's lock is held all along;
    one waiting on the shared file finds it is no longer at the name (`_current`). A folder that takes no new file
    keeps the shared one, held all the same. Not on Windows (its lock is of the file)."""
    if WINDOWS or os.fstat(fd).st_nlink < 2:
        return fd
    from mmgen.files import temporary_name  # (files uses locks)

    fresh = temporary_name(path)
    try:
        new = held_here(os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
    except OSError:
        return fd
    try:
        if not _lock_descriptor(new, slot, wait=False):  # (no other process knows the file)
            raise BlockingIOError
        keep_mode(path, fresh)
        os.replace(fresh, path)
    except OSError:
        with suppress(OSError):
            os.unlink(fresh)
        _close(new)
        return fd
    let_go(fd)
    return new


def _current(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file at `path` (not deleted, nor replaced by a newer lock file)."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except OSError:  # no file there now (or its folder went)
        return False


def _lock_descriptor(fd: int, slot: int, wait: bool) -> bool:
    """Lock the open lock file `fd` for this open file alone, waiting for its holder if `wait`; False where another
    holds it and `wait` is not set. Linux: the lock is of byte `slot`, the lock's name in its folder (`_slot`), so a
    lock file that is a hard link (a project copied with `cp -al` while it ran) is held for each folder apart: the
    copy runs while the original does, and each folder still has one holder. flock is taken shared beside it, so an
    older mmgen's lock (flock, exclusive) of the file and this one keep each other out, as they did."""
    if WINDOWS:
        return _polled(lambda: _windows_try(fd), wait)
    import fcntl

    ofd = getattr(fcntl, "F_OFD_SETLKW" if wait else "F_OFD_SETLK", None)  # (Linux only)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if ofd is None else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
        if ofd is not None:
            fcntl.fcntl(fd, ofd, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, slot, 1, 0))
    except BlockingIOError:
        return False
    except PermissionError as e:  # EACCES: what POSIX allows F_OFD_SETLK to say for a lock held
        if e.errno == errno.EACCES and not wait:
            return False
        raise
    return True


def _slot(path: Path) -> int | None:
    """The byte of a lock file locked for its name `path`: one of 2**62 drawn from the folder's identity (device and
    inode: a folder cannot be a hard link, and `cp -al` makes a new one) and the name, past any content it has. None
    where the folder is gone."""
    if WINDOWS:
        return 0  # (unused: the first byte is locked)
    try:
        folder = os.stat(path.parent)
    except FileNotFoundError:
        return None
    key = f"{folder.st_dev}:{folder.st_ino}/".encode() + os.fsencode(path.name)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 2


def _polled(attempt: Callable[[], bool], wait: bool) -> bool:
    """`attempt()` until it takes the lock, POLL_S apart — Windows has no lock call that waits for as long as it
    takes and lets Ctrl-C in — or once only unless `wait`: whether it took it."""
    while not attempt():
        if not wait:
            return False
        time.sleep(POLL_S)
    return True


def _windows_try(fd: int) -> bool:
    """One try at msvcrt's lock of the first byte of `fd`: False where another holds it."""
    try:
        _windows_call(fd, "LK_NBLCK")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EDEADLOCK):  # locked by another
            return False
        raise
    return True


def _windows_call(fd: int, mode: str) -> None:
    """msvcrt.locking of the first byte of `fd` (`mode`: LK_NBLCK, LK_UNLCK) — the one OS call of the Windows
    branch. Untested on real Windows: the suite runs on Linux, where tests put a fake msvcrt in its place (one holder
    per file) to drive the polling, the waiting and the inode check above it. What only Windows can show is not
    shown: that its lock works as the fake's does, and that a file open there cannot be deleted, so that `Held.remove`
    leaves the lock file in place there (a clip cache keeps one per clip file) and the inode check never meets a
    deleted one."""
    import msvcrt

    msvcrt.locking(fd, getattr(msvcrt, mode), 1)
