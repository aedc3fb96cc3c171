"""Whether a file is still the one hashed, told without reading it where the filesystem can say so.

Hashing a finished batch's outputs, a cached model, or a model file a batch names by path, at every check would
read gigabytes to learn nothing. So beside a file's sha256 goes its stamp — size, mtime, ctime, inode and device, as
git's index and make trust them: what rewrites a file moves its mtime (or its size), what replaces it brings another
inode, and what sets its mtime back by hand (`os.utime`, `touch -d`) moves its ctime, which no call can set. While
the stamp holds, the bytes are the ones hashed; once it moved (a rename, chmod or new hard link moves the ctime
too), the file is hashed again. Like git's, a stamp cannot see a same-size edit made after the file was hashed but
within the clock tick of its last write before (milliseconds: mmgen hashes what it has just written).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from mmgen.config import parse_json, read_small_file
from mmgen.errors import ConfigError
from mmgen.files import sha256_file, write_text
from mmgen.locks import LockFileRefused, file_lock

MAX_MEMO_BYTES = 64 * 2**20  # the memo of file-hashes: ~200 bytes a file, so some 300,000 files


@dataclass(frozen=True)
class FileStamp:
    """What the filesystem says about a file without reading it."""

    size: int
    mtime_ns: int
    inode: int
    device: int
    ctime_ns: int | None = None  # None in stamps recorded before it was: they never hold, so the file is hashed again

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)


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


class HashMemo:
    """The sha256s of files mmgen reads but does not keep (a model given as a path), each beside the stamp it was
    hashed at, in one JSON file: a file whose stamp still holds is not read again — a batch of a 2 GB model given
    by path no longer hashes it at every plan. A memo that cannot be read counts as empty, and one that cannot be
    written is not kept: it only saves time, never decides anything a hash would not."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = path.with_name(f".{path.name}.lock")

    def sha256(self, file: Path) -> str:
        """The file's sha256: remembered while its stamp holds, else read (and remembered if it held still)."""
        key = str(file.resolve())
        known = self._read().get(key)
        if known is not None and FileStamp.of(file) == known[1]:
            return known[0]
        sha256, stamp = hashed(file)
        if stamp is not None:
            self._remember(key, sha256, stamp)
        return sha256

    def _read(self) -> dict[str, tuple[str, FileStamp]]:
        try:
            entries = parse_json(read_small_file(self.path, MAX_MEMO_BYTES, follow=False), str(self.path))
        except (OSError, ConfigError):  # none yet, unreadable, not a small file of its own, or not JSON
            return {}
        known = {}
        for key, entry in entries.items() if isinstance(entries, dict) else ():
            try:
                known[key] = (str(entry["sha256"]), FileStamp(**entry["stamp"]))
            except (TypeError, KeyError):  # an entry not as _remember writes it
                continue
        return known

    def _remember(self, key: str, sha256: str, stamp: FileStamp) -> None:
        """Add one file, under a lock (torchrun ranks plan together), dropping files that moved or are gone."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with file_lock(self.lock):
                known = {k: v for k, v in self._read().items() if _still(Path(k), v[1])}
                known[key] = (sha256, stamp)
                entries = {k: {"sha256": s, "stamp": dataclasses.asdict(t)} for k, (s, t) in sorted(known.items())}
                write_text(self.path, json.dumps(entries, indent=1) + "\n")
        except (OSError, LockFileRefused):  # a read-only cache (its lock another user's): only hashed again next time
            pass


def _still(path: Path, stamp: FileStamp) -> bool:
    try:
        return FileStamp.of(path) == stamp
    except OSError:
        return False
