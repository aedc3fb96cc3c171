"""Who holds a lock (mmgen.locks), for the line of one refused or kept waiting: `OUT is in use: another mmgen batch
(pid 1234) is writing into it`.

A holder writes itself into its lock file as it takes it (`name_holder`): `OWNER-PID COMMAND`, where OWNER says which
process table PID belongs to (mmgen.temporaries.owner, HOST.BOOT: hashes of the host name and PID namespace, and of
the boot, as in a temporary's name). A holder from another table — a container, a host sharing the folder, or a host
of the same name in another boot — is said as one (`in another container or host`): its pid names another process
here (a container's batch is pid 1: init, alive), so it is never named, nor probed with os.kill. An mmgen from
before the boot was in OWNER (2026-12-03) writes `HOST-PID COMMAND`, an older one `PID COMMAND`: neither says the
boot, so of this HOST or with none that pid is named only where Linux's lock table (/proc/locks, which numbers every
holder as this process's table does and lists none it cannot see) shows it holding the file. An older mmgen reading
a new line finds no pid in it and names none.

A run folder's flock has no lock file to write into: its holder is read from /proc/locks alone (`flock_holder`), and
one held there by no process listed is another container's or host's. One listed holding it shared holds a lock in
it (mmgen.locks holds a lock's folder so): a batch writing into it, named by its lock file there (`folder_user`).
"""

from __future__ import annotations

import functools
import os
import re
import stat
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from mmgen.temporaries import host, owner

PROC_LOCKS = "/proc/locks"  # Linux's table of the locks held (tests point it at a file of their own)
_TAGGED = re.compile(r"(?P<owner>(?P<host>[0-9a-f]{8})(\.[0-9a-f]{6})?)-(?P<pid>[1-9][0-9]{0,9})")  # OWNER-PID, first word


@dataclass(frozen=True)
class Holder:
    """The process holding a lock, as it wrote itself into the lock file as it took it (`name_holder`)."""

    pid: int | None  # None: a process of another process table (another container or host), whose pid names none here
    command: str  # `mmgen batch`, `mmgen models import`; `python NAME` for a program using mmgen's Python API

    @property
    def where(self) -> str:
        """`pid 1234`, or where it runs when its pid is not this machine's to say."""
        return f"pid {self.pid}" if self.pid is not None else "in another container or host"

    def __str__(self) -> str:
        return f"{self.command}, {self.where}"


def holder(path: Path) -> Holder | None:
    """Who holds the lock of `path`; None where the file cannot be read (Windows keeps a held lock file unreadable),
    names no process, or that process is gone (the file still names the last holder until the next one writes
    itself in), or it is no regular file (a FIFO)."""
    if os.name == "nt":
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO: a read waits for its holder to write, or to end
                return None
            first, _, command = os.read(fd, 256).decode("utf-8").strip().partition(" ")
            return _named(fd, first, command or "a process")
        finally:
            os.close(fd)
    except (OSError, ValueError):  # unreadable, or no pid (an older mmgen's empty file)
        return None


def _named(fd: int, first: str, command: str) -> Holder | None:
    """The holder a lock file's line names (`first`: OWNER-PID, or an older mmgen's HOST-PID or bare PID), `fd` that
    file."""
    tagged = _TAGGED.fullmatch(first)
    if tagged and tagged["owner"] == owner():
        return _living(int(tagged["pid"]), command)
    if tagged and tagged["owner"] != host():  # (this HOST with no boot: an older mmgen's, read as a bare PID)
        return Holder(None, command)
    pid = int(tagged["pid"] if tagged else first)  # (ValueError: no pid)
    flocks = _flocks(fd)
    if flocks is None:  # no lock table to ask (not Linux): as an older mmgen took it
        return _living(pid, command)
    return _living(pid, command) if pid in (p for _, p in flocks) else None


def flock_holder(fd: int) -> Holder | None:
    """Who holds the flock found held on the open file `fd` (a run folder, which has no lock file to write a holder
    into), as Linux's /proc/locks says (no command: "a process"). A holder in a process table this one cannot see is
    not listed there (0 in older kernels): one found held with no holder listed is said as in another container or
    host. None where there is no table to ask (not Linux), or the one it names is gone."""
    flocks = _flocks(fd)
    if flocks is None:
        return None
    pid = next((pid for mode, pid in flocks if mode == "WRITE"), 0)
    return Holder(None, "a process") if pid == 0 else _living(pid, "")


def folder_user(folder: Path, fd: int) -> Holder | None:
    """Who holds the flock found held on `folder` (open as `fd`) where /proc/locks lists it held shared, by no
    exclusive holder: a process holding a lock in it (mmgen.locks holds a lock's folder so), such as a batch writing
    into it, named by the first lock file there whose holder is one of them — no training run, whose flock is
    exclusive. None where no shared holder is listed (or no table: not Linux)."""
    flocks = _flocks(fd) or []
    sharing = {pid for mode, pid in flocks if mode == "READ"}
    if not sharing or any(mode == "WRITE" for mode, _ in flocks):
        return None
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".lock") and entry.is_file(follow_symlinks=False):
                found = holder(Path(entry.path))
                if found is not None and found.pid in sharing:
                    return found
    living = (_living(pid, "") for pid in sorted(sharing))
    return next((found for found in living if found is not None), None)


def _flocks(fd: int) -> list[tuple[str, int]] | None:
    """The flocks held on the open file `fd` (waiters left out), each as its mode (READ, WRITE) and its holder's pid
    as this process's table numbers it, from /proc/locks; None where that cannot be read."""
    try:
        info = os.fstat(fd)
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return None
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    found = []
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2203756 0 EOF" (a waiter's: "1: -> FLOCK ...")
        fields = line.split()
        if fields[1:3] == ["FLOCK", "ADVISORY"] and fields[5:6] == [where] and fields[4].isdigit():
            found.append((fields[3], int(fields[4])))
    return found


def _living(pid: int, command: str) -> Holder | None:
    """The process `pid` of this process table while it is there (another user's too); None where it is gone or no
    process (0)."""
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)  # (signal 0: only whether it is there)
    except PermissionError:  # there, another user's
        pass
    except OSError:
        return None
    return Holder(pid, command or "a process")


def name_holder(fd: int) -> None:
    """Write this process (OWNER-PID and command) into the lock file it now holds, for `holder`. Best effort: a full
    disk leaves the lock held all the same. Not on Windows (mmgen.locks does not call it there): its locked byte is
    unreadable to others, and msvcrt's lock and unlock act at the file's position, which the write moves."""
    line = f"{owner()}-{os.getpid()} {_command()}\n".encode()
    with suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, line)
        os.ftruncate(fd, len(line))


@functools.cache
def _command() -> str:
    """This process's command as a user knows it: `mmgen WORD` (`mmgen models WORD`), else `python PROGRAM`."""
    argv = sys.argv if sys.argv and sys.argv[0] else ["python"]
    program = Path(argv[0])
    words = [str(a) for a in argv[1:] if not str(a).startswith("-")]
    if program.name == "mmgen" or (program.parent.name, program.name) == ("mmgen", "__main__.py"):
        return " ".join(["mmgen", *words[: 2 if words[:1] in (["models"], ["adapters"]) else 1]])
    return f"python -m {program.parent.name}" if program.name == "__main__.py" else f"python {program.name}"
