"""Whether a file is still the one hashed, told without reading it where the filesystem can say so.

Hashing a finished batch's outputs, or a cached model, at every check would read gigabytes to learn nothing. So
beside a file's sha256 goes its stamp — size, mtime, inode and device, as git's index and make trust them: what
rewrites a file moves its mtime (or its size), what replaces it brings another inode. While the stamp holds, the
bytes are the ones hashed; once it moved, the file is hashed again. Like git's, a stamp cannot see a same-size
edit made after the file was hashed but within the clock tick of its last write before (milliseconds: mmgen hashes
what it has just written), nor one whose mtime was set back by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmgen.files import sha256_file


@dataclass(frozen=True)
class FileStamp:
    """What the filesystem says about a file without reading it."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def hashed(path: Path) -> tuple[str, FileStamp | None]:
    """The file's sha256, and its stamp if it held still while it was read (else None: hash it at every check)."""
    before = FileStamp.of(path)
    sha256 = sha256_file(path)
    return sha256, before if FileStamp.of(path) == before else None


def unchanged(path: Path, size: int, sha256: str, stamp: FileStamp | None) -> bool:
    """True if the file at `path` still has `size` and `sha256`: read only when its `stamp` (as recorded with the
    sha256, None if none was) moved. OSError if it cannot be looked at."""
    now = FileStamp.of(path)
    if now.size != size:
        return False
    return now == stamp or sha256_file(path) == sha256
