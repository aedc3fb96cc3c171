"""Who made a temporary file, and the clean-up of those a killed run left behind.

mmgen writes every file through a temporary beside its target (mmgen.files.temporary_name), named
`.STEM.OWNER-PID-XXXXXXXX.partial.EXT`: PID is the writing process, OWNER (a hash of the host name, the PID
namespace and the kernel's boot) says which process table that PID belongs to, XXXXXXXX makes the name unique per
file. A process that
ends normally, fails or is interrupted removes its temporaries; one killed outright (kill -9, the OOM killer, a
power cut) cannot, and `remove_leftovers` removes them when the next command writes into that folder.

The rule: a temporary is a leftover when its OWNER is this process's own and no process with its PID is alive.
So a running mmgen's temporaries (its files being written, the old files it keeps aside until its new ones are
all in place) are never touched: its PID is alive. One on another machine or in another container sharing the
folder has another OWNER, so its PID says nothing here and its files are left alone (its own next run cleans
them up). A reused PID only keeps a leftover longer. No lock and no extra file is needed, and the temporary
stays in its target's folder, where os.replace is an atomic rename (a temporary folder elsewhere could be on
another filesystem).

The boot is in OWNER because the host name and the PID namespace may not tell two machines apart: hosts of one name
(cloned from one image) both in the initial PID namespace (`pid:[4026531836]` on every Linux host) would share a
folder on NFS as one process table, each sweeping the other's running writes. Linux's boot id is random per boot.
So a temporary left from an earlier boot of this host (a power cut) reads as another table's and stays, as does one
named by mmgen before the boot was in OWNER (until 2026-12-03): the safe side, as its writer may be running still.

Temporaries named before OWNER-PID was in the name (`.STEM.XXXXXXXX.partial.EXT`, mmgen until 2026-11-30) do not
say who wrote them: nothing tells a killed run's from a running one's (an older mmgen still writing, here or on
another machine; its file kept aside may be years old), so they are left alone. A batch removes its jobs' own
when it redoes them, holding its folder's lock (pipelines/batch/run.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import uuid
from contextlib import suppress
from pathlib import Path

BOOT_ID = "/proc/sys/kernel/random/boot_id"  # random per boot (Linux); tests point it at a file of their own
LEFTOVER = re.compile(r"\..*\.(?P<owner>[0-9a-f]{8})-(?P<pid>[1-9][0-9]{0,8})-[0-9a-f]{8}\.partial(\.[^.]*)?")


def tag() -> str:
    """OWNER-PID-XXXXXXXX for a new temporary of this process."""
    return _tag(uuid.uuid4().hex[:_UNIQUE])


def _tag(unique: str) -> str:
    return f"{owner()}-{os.getpid()}-{unique}"


_UNIQUE = 8  # hex digits of XXXXXXXX


def added_bytes() -> int:
    """How many bytes a temporary's name (mmgen.files.temporary_name) has beyond its target's stem and suffix: its
    leading dot and `.OWNER-PID-XXXXXXXX.partial` (as long for every temporary of this process). No uuid4 is made
    for it (output_checks asks once per planned file: 20,000 of them); the PID is read each time, a forked
    process's own."""
    return len(".") + len(f".{_tag('0' * _UNIQUE)}.partial")


@functools.cache
def owner() -> str:
    """This process's process table: its host name, PID namespace and the kernel's boot (Linux; the host name alone
    elsewhere), as 8 hex digits, the same for every process of that table until the host reboots."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    try:
        with open(BOOT_ID, encoding="ascii") as boot:
            booted = boot.read().strip()
    except (OSError, ValueError):
        booted = ""
    table = "\0".join([platform.node(), namespace, booted])  # (no socket: offline runs stay socket-free)
    return hashlib.sha256(table.encode()).hexdigest()[:8]


def alive(pid: int) -> bool:
    """Whether a process `pid` runs here (True where that cannot be told)."""
    if os.name != "posix" or pid == os.getpid():  # Windows' os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process (EPERM)
        return True
    return True


def leftovers(folder: Path) -> list[Path]:
    """The temporary files in `folder` that a killed mmgen process left (the module's rule): files it was writing,
    and the old files it kept aside (mmgen.files.kept_together), by name."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in sorted(entries, key=lambda e: e.name):
        with suppress(OSError):
            if left_behind(Path(entry.path)) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return found


def left_behind(path: Path) -> bool:
    """Whether `path` is named as a temporary of a killed mmgen process (the module's rule)."""
    named = LEFTOVER.fullmatch(path.name)
    return bool(named) and named["owner"] == owner() and not alive(int(named["pid"]))


def named_after(target: Path) -> list[tuple[Path, str]]:
    """The temporaries beside `target` named after it (mmgen.files.temporary_name) — being written, kept aside
    (mmgen.files.kept_together) by a running process, or left by a killed one — each with the process that made it
    (OWNER-PID), by name."""
    pattern = re.compile(
        re.escape(f".{target.stem}.") + r"(?P<process>[0-9a-f]{8}-[1-9][0-9]{0,8})-[0-9a-f]{8}"
        + re.escape(f".partial{target.suffix}")
    )
    try:
        names = sorted(os.listdir(target.parent))
    except OSError:
        return []
    return [(target.parent / name, named["process"]) for name in names if (named := pattern.fullmatch(name))]


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files in `folder` that a killed mmgen process left (`leftovers`); what cannot be
    removed stays."""
    for path in leftovers(folder):
        with suppress(OSError):
            path.unlink()
