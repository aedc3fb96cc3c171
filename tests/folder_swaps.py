"""The swap an attacker (or a careless script) makes under a running command: `mv DIR DIR.old; ln -s ELSEWHERE DIR`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def swapping_after_the_first(write: Callable, folder: Path, old: Path, elsewhere: Path) -> Callable:
    """`write` that, once its first call has written, moves `folder` to `old` and puts a link to `elsewhere` at its
    name: every later write goes through a name that now leads elsewhere."""

    def swapping(*args, **kwargs):
        written = write(*args, **kwargs)
        if not old.exists():
            folder.rename(old)
            folder.symlink_to(elsewhere)
        return written

    return swapping
