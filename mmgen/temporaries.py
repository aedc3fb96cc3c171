"""Who made a temporary file, and the clean-up of those a killed run left behind.

mmgen writes every file through a temporary beside its target (mmgen.files.temporary_name), named
`.STEM.OWNER-PID-XXXXXXXX.partial.EXT`: PID is the writing process, OWNER (`owner`: HOST.BOOT) says which process
table that PID belongs to, XXXXXXXX makes the name unique per file. HOST is a hash of the host name and the PID
namespace (8 hex digits), BOOT one of the kernel's boot id (6 hex digits; Linux's is random per boot). A process
that ends normally, fails or is interrupted removes its temporaries; one killed outright (kill -9, the OOM killer, a
power cut) cannot, and `remove_leftovers` removes them when the next command writes into that folder.

The rule (`left_behind`) — a temporary is a leftover when its HOST is this process's own and:
- its BOOT is this boot's, and no process with its PID is alive here. A running mmgen's temporaries (its files
  being written, the old files it keeps aside until its new ones are all in place) are never touched: its PID is
  alive; a reused PID only keeps a leftover longer.
- its BOOT is another (an earlier boot of this host: a power cut, or a host of the same name and PID namespace, such
  as a clone of one image in the initial namespace, `pid:[4026531836]` on every Linux host, sharing the folder on
  NFS), and the file last changed (st_ctime, which a write and a rename both set) before this boot began (`btime` in
  /proc/stat). A writer of an earlier boot died with it; a live writer on the other host changed its file after our
  boot began, or named it there (a rename sets st_ctime, so a file it kept aside counts from then). Swept: a file
  last changed before this boot began; kept: one changed since. The one case this rule gets wrong: a file that the
  other host's live writer has left untouched since before we booted and still needs is swept all the same, as the
  rule cannot ask the other host.
- it has no BOOT (`HOST-PID`, named by mmgen before 2026-12-03), and its PID is no process here or it last changed
  before this boot (the rule above). Its writer was an older mmgen: the first half is that mmgen's own rule, so a
  killed older run's temporaries (a model's half-written weights, up to a GB) go at the next command as they
  would have; on a host of the same name still running an older mmgen it sweeps as that mmgen does itself.
One on another machine or in another container sharing the folder has another HOST, so its PID says nothing here
and its files are left alone (its own next run cleans them up). No lock and no extra file is needed, and the
temporary stays in its target's folder, where os.replace is an atomic rename (a temporary folder elsewhere could be
on another filesystem). An older mmgen reads HOST.BOOT-PID as no temporary of its own (its pattern wants 8 hex
digits before the PID) and leaves it alone.

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
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

BOOT_ID = "/proc/sys/kernel/random/boot_id"  # random per boot (Linux); tests point it at a file of their own
PROC_STAT = "/proc/stat"  # its `btime` line: when this boot began (tests point it at a file of their own)
PROCESS = r"(?P<host>[0-9a-f]{8})(?:\.(?P<boot>[0-9a-f]{6}))?-(?P<pid>[1-9][0-9]{0,8})"  # OWNER-PID (no BOOT: older)
LEFTOVER = re.compile(r"\..*\." + PROCESS + r"-[0-9a-f]{8}\.partial(\.[^.]*)?")
TEMPORARY = re.compile(r"\..*\.(" + PROCESS + r"-)?[0-9a-f]{8}\.partial(\.[^.]*)?")  # any, unowned ones too


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


def owner() -> str:
    """This process's process table, HOST.BOOT: `host` and `boot`, the same for every process of that table until
    the host reboots."""
    return f"{host()}.{boot()}"


@functools.cache
def host() -> str:
    """This process's host name and PID namespace (Linux; the host name alone elsewhere), as 8 hex digits: OWNER as
    mmgen named it before the boot was in it, so both agree on which temporaries are this host's."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{platform.node()}\0{namespace}".encode()).hexdigest()[:8]  # no socket: offline runs stay socket-free


@functools.cache
def boot() -> str:
    """The kernel's boot (Linux's boot id; none elsewhere: always the same), as 6 hex digits."""
    try:
        with open(BOOT_ID, encoding="ascii") as booted:
            boot_id = booted.read().strip()
    except (OSError, ValueError):
        boot_id = ""
    return hashlib.sha256(boot_id.encode()).hexdigest()[:_BOOT]


_BOOT = 6  # hex digits of BOOT: 1 in 16 million for two boots to share one


def booted_at() -> float | None:
    """When this boot began (`btime` in /proc/stat, whole seconds); None where that cannot be read (not Linux)."""
    with suppress(OSError, ValueError), open(PROC_STAT, encoding="ascii", errors="replace") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


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
    return _files_in(folder, lambda name: left_behind(folder / name))


def left_behind(path: Path) -> bool:
    """Whether `path` is named as a temporary of a killed mmgen process (the module's rule)."""
    named = LEFTOVER.fullmatch(path.name)
    if not named or named["host"] != host():
        return False
    if named["boot"] == boot():
        return not alive(int(named["pid"]))
    if named["boot"] is None and not alive(int(named["pid"])):  # an older mmgen's, and its own rule
        return True
    return _changed_before_boot(path)


def _changed_before_boot(path: Path) -> bool:
    """Whether `path` last changed (written or renamed) before this boot began; False where that cannot be told."""
    began = booted_at()
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return began is not None and max(info.st_ctime, info.st_mtime) < began


def named_after(target: Path) -> list[tuple[Path, str]]:
    """The temporaries beside `target` named after it (mmgen.files.temporary_name) — being written, kept aside
    (mmgen.files.kept_together) by a running process, or left by a killed one — each with the process that made it
    (OWNER-PID), by name."""
    pattern = re.compile(
        re.escape(f".{target.stem}.") + "(?P<process>" + PROCESS + r")-[0-9a-f]{8}" + re.escape(f".partial{target.suffix}")
    )
    try:
        names = sorted(os.listdir(target.parent))
    except OSError:
        return []
    return [(target.parent / name, named["process"]) for name in names if (named := pattern.fullmatch(name))]


def not_running(folder: Path) -> list[Path]:
    """Every temporary in `folder`, of any mmgen (named without OWNER-PID too) and any process table, but those of a
    process of this HOST alive here: for a command holding the lock that every writer of the folder holds (a cache
    entry's, mmgen.weights.entry_lock) to empty it, as no writer of another table can be writing then."""

    def not_alive_here(name: str) -> bool:
        named = TEMPORARY.fullmatch(name)
        return bool(named) and not (named["host"] == host() and named["boot"] in (None, boot())
                                    and alive(int(named["pid"])))

    return _files_in(folder, not_alive_here)


def _files_in(folder: Path, chosen: Callable[[str], bool]) -> list[Path]:
    """The plain files in `folder` whose names are `chosen`, in name order ([] where it cannot be listed)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for entry in sorted(entries, key=lambda e: e.name):
        with suppress(OSError):
            if chosen(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
    return found


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files in `folder` that a killed mmgen process left (`leftovers`); what cannot be
    removed stays."""
    for path in leftovers(folder):
        with suppress(OSError):
            path.unlink()
