"""A file written again keeps what the user gave the one it replaces — its mode and group — however mmgen writes it
(files.atomic_path, a manifest rewritten, a lock file made afresh)."""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path


def keep_mode(replaced: Path, new: Path) -> None:
    """Give `new`, about to take the place of what is at `replaced`, its mode, and its group where this process may
    (its own, or root): a user's 0600 config or sidecar became 0644, and a 0664 group file 0644 in the writer's group,
    when written again with the umask's. Nothing where `replaced` is not there, or is a link or another kind of file."""
    try:
        old, now = os.lstat(replaced), os.lstat(new)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(old.st_mode) or stat.S_IFMT(old.st_mode) != stat.S_IFMT(now.st_mode):
        return
    if old.st_gid != now.st_gid:
        with suppress(OSError):  # not a group of this user's: the writer's own, as before
            os.chown(new, -1, old.st_gid)
    os.chmod(new, stat.S_IMODE(old.st_mode))  # after the group: a chown takes away set-id bits
