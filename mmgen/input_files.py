"""Why a path given as an input file cannot be one — in the same words for every command (media, weights files,
adapters), so a folder, a device or a symbolic-link loop is never reported as "no such file"."""

from __future__ import annotations

import errno
import os
import stat

# `-` is a file's name to mmgen, as to any path: inputs are seeked and read more than once, which a pipe cannot be.
NOT_STDIN = "mmgen reads inputs from files, not from standard input: give the file's path"


def why_not_a_file(path: str | os.PathLike, missing: str = "no such file") -> str | None:
    """None for a regular file (or a symlink to one); otherwise what it is instead, as a phrase to follow the
    path (`missing` where there is nothing). An OS error other than a missing or looping path (e.g. a name too
    long) is raised as it is."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "it is a symlink loop"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):  # a dangling symlink too: there is no file behind it
            return f"{missing} ({NOT_STDIN})" if os.fspath(path) == "-" else missing
        raise
    if stat.S_ISDIR(mode):
        return "it is a directory"
    if not stat.S_ISREG(mode):
        return "it is not a regular file (a device, pipe or socket)"
    return None
