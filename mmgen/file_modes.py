"""A file written again keeps what the user gave the one it replaces (its mode and group; as root, its owner too),
however mmgen writes it (files.atomic_path, a manifest rewritten, a lock file made afresh)."""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path


def keep_mode(replaced: Path, new: Path) -> None:
    """Give `new`, about to take the place of what is at `replaced`, its mode, and its group where this process may
    (its own, or root): a user's 0600 config or sidecar became 0644, and a 0664 group file 0644 in the writer's group,
    when written again with the umask's. Run as root over a user's file, its owner too: root's copy of their 0600
    config would lock them out. Nothing where `replaced` is not there, or is a link or another kind of file."""
    try:
        old, now = os.lstat(replaced), os.lstat(new)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(old.st_mode) or stat.S_IFMT(old.st_mode) != stat.S_IFMT(now.st_mode):
        return
    owner = old.st_uid if old.st_uid != now.st_uid and _root() else -1  # root's 0600 over a user's: theirs no more
    if old.st_gid != now.st_gid or owner != -1:
        with suppress(OSError):  # not a group of this user's: the writer's own, as before
            os.chown(new, owner, old.st_gid)
    mode = stat.S_IMODE(old.st_mode)
    if os.lstat(new).st_uid != old.st_uid:  # another's file, kept by another owner: never less than the umask gave it
        mode |= stat.S_IMODE(now.st_mode)
    os.chmod(new, mode)  # after the owner and group: a chown takes away set-id bits


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
