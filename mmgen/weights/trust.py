"""Trust-on-first-use records for weights nobody publishes a checksum for (the paper's Google Drive files).

The first download (or hand import) of such a file that passes `weights_only` loading and the strict
architecture check records its sha256 and size under `<cache root>/trust/<name>.json`. Every later download,
import and load must match it. The record outlives `mmgen models rm NAME`, so a re-download after a removal
is still checked; `mmgen models rm NAME --forget` drops it (for when the authors replace a file on purpose).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mmgen.config import read_record, to_dict
from mmgen.errors import ChecksumMismatch
from mmgen.files import write_text
from mmgen.weights.cache import check_removable, own_path


@dataclass(frozen=True)
class TrustRecord:
    """The file first seen under a model name."""

    name: str
    file: str  # its name at the source, e.g. Landscape.pt
    sha256: str
    size: int  # bytes
    source: str  # where it came from: the Drive folder URL, or the imported path
    first_seen: str  # ISO 8601, UTC


def trust_path(root: Path, name: str) -> Path:
    return own_path(root, "trust") / f"{name}.json"


def trusted(root: Path, name: str) -> TrustRecord | None:
    return read_record(TrustRecord, trust_path(root, name), "trust record", f"run `mmgen models rm {name} --forget`")


def check_trusted(root: Path, name: str, sha256: str, size: int | None, what: str) -> TrustRecord | None:
    """Raise ChecksumMismatch if `name` has a trust record that `sha256` (and `size`, unless None) do not
    match; returns the record."""
    record = trusted(root, name)
    if record is not None and (record.sha256 != sha256 or size not in (None, record.size)):
        got = f"sha256 {sha256}" + (f", {size} bytes" if size is not None else "")
        raise ChecksumMismatch(
            f"{name}: {what} is not the file first seen on {record.first_seen[:10]} "
            f"(sha256 {record.sha256}, {record.size} bytes); got {got}",
            hint=f"nothing was cached; if the authors replaced {record.file} on purpose, run "
            f"`mmgen models rm {name} --forget` and pull again",
        )
    return record


def trust(root: Path, name: str, file: str, sha256: str, size: int, source: str) -> TrustRecord:
    """Record the first good file under `name` (an existing record is kept: it must already match)."""
    record = check_trusted(root, name, sha256, size, file)
    if record is None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record = TrustRecord(name, file, sha256, size, source, now)
        path = trust_path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(to_dict(record), indent=1) + "\n")
    return record


def check_forgettable(root: Path, name: str) -> None:
    """ConfigError (exit 2) if `name` has a trust record that cannot be deleted (a read-only cache): for a command
    that also removes other things to ask before it removes any of them."""
    path = trust_path(root, name)
    if path.is_file():
        check_removable(path, f"the sha256 recorded for {name!r}")


def forget(root: Path, name: str) -> bool:
    """Drop the trust record; True if there was one."""
    path = trust_path(root, name)
    if not path.is_file():
        return False
    check_forgettable(root, name)
    path.unlink()
    return True
