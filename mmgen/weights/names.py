"""What a model or adapter name may be. A name becomes a folder in the cache (and NAME.yaml in a registry
folder), so it is checked here, once, before it reaches the filesystem: no torch, so parsing a command line that
holds one stays quick."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mmgen.errors import UsageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# Bytes (a name is ASCII): well under the 255 a file name may have, leaving room for what is added to it
# (NAME.yaml, NAME.safetensors, a temporary's prefix).
NAME_MAX = 200
# Bytes in one file or folder name, and in a whole path: what Linux (ext4, XFS, btrfs), macOS (APFS) and Windows
# (NTFS) allow; a longer path is refused by the OS at its first use (ENAMETOOLONG).
PART_MAX, PATH_MAX = 255, 4095


def is_path(name_or_path: str | Path) -> bool:
    """`-m` takes a registry name or a path; anything with a folder separator or a .safetensors suffix is a path."""
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(".safetensors")


def check_name_length(name: str, kind: str = "model") -> None:
    """UsageError if `name` is longer than any model or adapter name may be."""
    size = len(os.fsencode(name))
    if size > NAME_MAX:
        raise UsageError(f"{kind} name too long ({size} bytes, at most {NAME_MAX})")


def check_reference(value: str, kind: str = "model") -> None:
    """UsageError unless `value` — what -m or --adapter (`kind`) was given — can be looked up: a name no longer
    than a name may be, or a path no filesystem refuses for its length (said here in one line, not by the OS)."""
    if not is_path(value):
        check_name_length(value, kind)
        return
    longest = max((len(os.fsencode(part)) for part in Path(value).parts), default=0)
    if longest > PART_MAX:
        raise UsageError(f"{kind} path too long (a name in it is {longest} bytes, at most {PART_MAX})")
    if len(os.fsencode(value)) > PATH_MAX:
        raise UsageError(f"{kind} path too long ({len(os.fsencode(value))} bytes, at most {PATH_MAX})")


def check_name(name: str, kind: str = "model") -> None:
    """UsageError unless `name` can name a model or adapter (`kind`, for the message)."""
    check_name_length(name, kind)
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"invalid {kind} name {name!r}: use letters, digits and . _ + - only")


def is_name(text: str) -> bool:
    """Whether `text` can name a model or adapter (check_name would pass it)."""
    return len(os.fsencode(text)) <= NAME_MAX and NAME_PATTERN.fullmatch(text) is not None
