"""The weights cache: converted models by name, each a self-describing safetensors plus a small JSON record
of where it came from, so `verify` can re-hash it and `list` can describe it without opening it.

Layout under the root ($MMGEN_CACHE, else the platform's user cache dir for "mmgen", read when used):
    models/<name>/model.safetensors   the converted weights (arch + config in the metadata)
    models/<name>/model.json          CacheRecord; written last, so a model counts as cached only once complete
                                      (a replaced one's goes first, kept aside until the new one is in place:
                                      meanwhile every reader finds the old model through what was kept aside,
                                      and a replacement killed half way is put back by the next command that
                                      locks the folder: `ModelCache.lock`; kept_states.last_kept)
    models/<name>/<sha256>.part       an interrupted download, resumed by the next pull (from Google Drive:
                                      <file id>.part, complete but unchecked, and gdown's <file id>.part*.part)
    models/<name>/.lock               held while downloading or converting into this folder; a folder left with
                                      nothing else goes with it, so a failed import leaves no trace
    trust/<name>.json                 the sha256 and size first seen for a file with no published checksum
                                      (mmgen.weights.trust); kept by `models rm`
    file-hashes.json                  the sha256 and stamp of each model file given by path that was hashed
                                      (mmgen.stamps.HashMemo), so an unchanged one is not read again

A cached file is checked every time it is loaded, cheaply: its size, and its stamp (mtime, ctime, inode, device) as
recorded when it was written or last hashed; only when the stamp changed is it hashed again in full.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from mmgen import environment
from mmgen.config import read_record, to_dict
from mmgen.disk_failures import if_writable
from mmgen.errors import ChecksumMismatch, ConfigError
from mmgen.files import sha256_file, write_text
from mmgen.kept_states import last_kept
from mmgen.output_checks import kind_of, nearest_existing, refusal_to_create, try_a_file
from mmgen.stamps import FileStamp, HashMemo
from mmgen.weights.entry_lock import entry_lock, remove_files, unwritable
from mmgen.weights.names import check_name, is_name


def cache_root() -> Path:
    """MMGEN_CACHE, else the platform's cache folder; ConfigError (exit 2) when it, or a folder on its way, is a
    file (or a device…): every command that caches would fail on it with an OS error, after reading its inputs."""
    root = environment.folder(environment.CACHE) or Path(platformdirs.user_cache_dir("mmgen"))
    existing = nearest_existing(root)
    if not existing.is_dir():
        where = "it" if existing == root else existing
        raise ConfigError(f"cache folder {root}: {where} is {kind_of(existing)}, not a folder",
                          hint="set MMGEN_CACHE to a folder")
    return root


OWN = ("models", "adapters", "trust", "clips", "file-hashes.json")  # what mmgen keeps in the cache folder


def part_of_cache(path: str | os.PathLike) -> Path | None:
    """The folder (or file) of mmgen's own in the cache that `path` is, or is inside — through symlinks, or
    another spelling of the name — or the cache folder itself for any other place in it; None outside it: an output
    there would replace a model's or adapter's record (OUT.json), the file-hashes memo, or files mmgen manages or
    will. A cache folder that cannot be one is no such place."""
    try:
        root = cache_root()
    except ConfigError:
        return None
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if not real.is_relative_to(base):
        return None
    return next((root / name for name in OWN if real.is_relative_to(base / name)), root)


class DamagedEntry(ConfigError):
    """A folder of the cache's own (models/, models/NAME, adapters/NAME, trust/) that is a symlink: mmgen makes
    none, and deleting or writing into one would reach files outside the cache. `link` is the symlink."""

    def __init__(self, link: Path, hint: str):
        super().__init__(f"{link}: damaged: a symlink (to {os.readlink(link)}), not a folder of mmgen's", hint=hint)
        self.link = link


def own_path(root: Path, *parts: str) -> Path:
    """`root`/`parts`, the one way mmgen names a folder of its own inside the cache folder `root`: a DamagedEntry
    (exit 2) if any of `parts` on the way is a symlink, so that nothing mmgen deletes, renames or writes there
    (a model's files, an adapter's, the temporaries and locks beside them, trust records) is ever reached through
    one. A link is only ever removed itself (`remove_entry_link`). The files inside are never followed either:
    records are read without following links (config.read_record), and replacing or deleting one replaces or
    deletes the link, never what it points to."""
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            entry = root / parts[0] / parts[1] if len(parts) > 1 and path != root / parts[0] else None
            how = (f"remove the link: `mmgen models rm {entry.name}`" if entry is not None and path == entry
                   else f"replace the link {path} with a folder")
            raise DamagedEntry(path, how)
    return path


T = TypeVar("T")


def unless_kind_damaged(root: Path, kind: str, look: Callable[[], T], otherwise: T) -> T:
    """`look()` — a look among the entries of `kind` ("models", "adapters") in the cache folder `root`, made for the
    other kind's sake (may a model take this name; does NAME mean the model or the adapter) — or `otherwise` where
    the `kind` folder itself is damaged (a symlink: own_path's DamagedEntry). None of its entries can be read then;
    that is for its own names to say (`--adapter NAME`, `models info NAME --adapter`), never the other kind's to
    stop at. A damaged entry (`kind`/NAME a symlink) still says so: the name is taken."""
    try:
        return look()
    except DamagedEntry as e:
        if e.link != root / kind:
            raise
        return otherwise


def entry_names(root: Path, kind: str, record: str, kept: Callable[[str], object]) -> list[str]:
    """The names of the entries in the cache folder `root`'s `kind` ("models", "adapters"): each folder holding its
    `record` file, or a record a replacement kept aside (in flight, or killed outright) that `kept(name)` finds
    (kept_states.last_kept), and each entry that is a symlink. Found without judging them: a damaged one (a link:
    DamagedEntry) is named all the same, and reading it says what is wrong — one row of `models list`, never the end
    of the listing. Nothing is looked for in a `kind` folder that is itself a link: that is one damaged row of its own
    (`damaged_folder`), whatever it points to."""
    folder = root / kind
    if folder.is_symlink() or not folder.is_dir():
        return []
    stem, suffix = os.path.splitext(record)
    names = {p.parent.name for p in folder.glob(f"*/{record}")}
    with suppress(OSError):  # a folder that cannot be listed: what glob found, as glob does
        names |= {p.name for p in folder.iterdir() if p.is_symlink() and is_name(p.name)}
    for name in {p.parent.name for p in folder.glob(f"*/.{stem}.*.partial{suffix}")} - names:
        try:
            if kept(name) is not None:
                names.add(name)
        except ConfigError:  # damaged: said where it is read
            names.add(name)
    return sorted(names)


def damaged_folder(root: Path, kind: str) -> DamagedEntry | None:
    """The cache folder `root`'s `kind` folder ("models", "adapters") as damaged where it is a symlink — own_path's
    DamagedEntry, saying what it points to and how to mend it — else None. Whether the link points to entries, to
    none or nowhere (`entry_names` finds nothing there), it is one `damaged` row of `models list`, `models verify`
    and `doctor`, named `kind`/ (no entry's name has a slash)."""
    try:
        own_path(root, kind)
    except DamagedEntry as e:
        return e
    return None


def remove_entry_link(root: Path, name: str) -> Path | None:
    """Delete the symlink that stands where the model or adapter `name` would be (models/NAME, adapters/NAME;
    `own_path`) — the link only, never what it points to; the link, or None if there was none."""
    for kind in ("models", "adapters"):
        folder = root / kind
        if not folder.is_symlink() and (folder / name).is_symlink():
            (folder / name).unlink()
            return folder / name
    return None


def check_cache_writable(root: Path) -> None:
    """ConfigError (exit 2) unless files can be made in the cache folder `root`, or where it would be created:
    said before a command that caches does any work, not as an OS error at its first write. Creates no folder;
    it tries a file, as permission bits do not tell root, a read-only mount or /proc apart."""
    if refused := refusal_to_create(root):
        where, e = refused
        raise unwritable(root, e, where)


def check_removable(path: Path, what: str) -> None:
    """ConfigError (exit 2) unless `path` — a file, or a folder of files — can be deleted: the folders it is
    deleted from must take changes. Said before the first deletion, so a read-only cache (a read-only mount, a
    folder without write permission) keeps `what` whole instead of losing part of it to an OS error."""
    for folder in (path, path.parent) if path.is_dir() else (path.parent,):
        try:
            try_a_file(folder)
        except OSError as e:
            raise ConfigError(
                f"cannot remove {what}: the cache folder {folder} cannot be changed: {e.strerror or e}",
                hint="make it writable, or remount it read-write, and run this again",
            ) from None


MERGED_FROM = "merged from "  # the start of a record's source for a model made by `models import --merge`


@dataclass(frozen=True)
class CacheRecord:
    """Provenance of one cached model."""

    name: str
    arch: str
    config: dict[str, Any]  # architecture dataclass fields
    sha256: str  # of model.safetensors: what `verify` re-hashes
    size: int  # bytes of model.safetensors
    dtype: str  # float32 or float16
    source: str  # the URL downloaded, the path imported, or MERGED_FROM and what was merged
    source_sha256: str  # of the original file (what a registry entry's weights.sha256 names)
    source_format: str  # pt or safetensors
    imported_at: str  # ISO 8601, UTC
    mmgen_version: str
    stamp: FileStamp | None = None  # of model.safetensors when last hashed (None: hash at the next load)
    sampling: dict[str, Any] | None = None  # the sampling settings the imported file carried (weights/lineage)
    upsampler: str | None = None  # the upsampler the imported file named (weights/lineage)
    source_dtypes: str | None = None  # the floating dtypes the source file held, e.g. "float16" (None: not recorded)
    lineage_of: str | None = None  # the registered model whose weights these are, and whose sampling/upsampler it took

    @property
    def same_weights_as_source(self) -> bool:
        """Whether model.safetensors holds exactly the source file's values: stored as they were, or widened
        (float16/bfloat16 → float32), never narrowed. Then what was made for the source (an adapter trained on
        it) fits this model too, although the two files, their containers and their sha256 differ."""
        exact = {"float32": {"float32", "float16", "bfloat16"}, "float16": {"float16"}}.get(self.dtype, set())
        return self.source_dtypes is not None and set(self.source_dtypes.split(", ")) <= exact


class ModelCache:
    """Cached models by name under one root."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    def folder(self, name: str) -> Path:
        """The model's folder; a name that is not a model name (a path, "..") never reaches the filesystem."""
        check_name(name, "model")
        return own_path(self.root, "models", name)

    def weights_path(self, name: str) -> Path:
        return self.folder(name) / "model.safetensors"

    def record_path(self, name: str) -> Path:
        return self.folder(name) / "model.json"

    def part_path(self, name: str, sha256: str) -> Path:
        return self.folder(name) / f"{sha256}.part"

    def file_sha256(self, path: Path) -> str:
        """The sha256 of a file outside the cache (a model given by path), read only when its stamp moved."""
        return HashMemo(self.root / "file-hashes.json").sha256(path)

    def names(self) -> list[str]:
        return entry_names(self.root, "models", "model.json", self.kept_files)

    def kept_files(self, name: str) -> tuple[Path, Path] | None:
        """The record file and weights file of the model `name` as last kept: its own, or while a replacement is in
        flight or was killed half way (not put back yet: `lock`), the old ones it kept aside (kept_states.last_kept)."""
        return last_kept(self.record_path(name), self.weights_path(name), _describes)

    def record(self, name: str) -> CacheRecord | None:
        """The record of a complete cached model (as last kept: `kept_files`), or None."""
        kept = self.kept_files(name)
        if kept is None:
            return None
        hint = f"run `mmgen models rm {name}`"
        record = read_record(CacheRecord, kept[0], "cache record", hint)
        if record is None or not os.path.lexists(kept[1]):
            return None
        if kept[1].is_symlink() or not kept[1].is_file():  # /dev/zero, /etc/passwd: no weights file of mmgen's
            what = "a symlink" if kept[1].is_symlink() else "not a regular file"
            raise ConfigError(f"{kept[1]}: damaged cached weights file: {what}, not a file of mmgen's", hint=hint)
        return record

    def weights_file(self, name: str) -> Path:
        """Where the cached model's weights are read from: model.safetensors, or the old file a replacement in
        flight, or one killed half way, kept aside (`kept_files`). (`weights_path` is where a model is written.)"""
        kept = self.kept_files(name)
        return kept[1] if kept is not None else self.weights_path(name)

    def write_record(self, record: CacheRecord) -> None:
        """Commit a model: its weights file must already be in place."""
        path = self.record_path(record.name)
        write_text(path, json.dumps(to_dict(record), indent=1) + "\n")

    def checked(self, name: str, record: CacheRecord, hint: str) -> CacheRecord:
        """`record` once its weights file is shown to hold the recorded bytes: the size always, the full sha256
        only when the file's stamp moved since it was last hashed (then the new stamp is recorded). A damaged
        file raises ChecksumMismatch with `hint` (how to replace it)."""
        path = self.weights_file(name)
        stamp = FileStamp.of(path)
        if stamp == record.stamp:
            return record
        actual = sha256_file(path) if stamp.size == record.size else None
        if actual != record.sha256:
            found = f"sha256 {actual}" if actual else f"{stamp.size} bytes instead of {record.size}"
            raise ChecksumMismatch(
                f"{name}: the cached weights file {path} has changed on disk ({found}; recorded sha256 "
                f"{record.sha256})",
                hint=hint,
            )
        return self.restamped(name, record)

    def restamped(self, name: str, record: CacheRecord) -> CacheRecord:
        """`record` with the stamp of its weights file, just hashed and found to hold it: kept in the model's record
        too, so the next load need not hash it again — unless the cache is read-only, or the record is one a
        replacement kept aside (its own record is the replacement's to write)."""
        kept = self.kept_files(name)
        if kept is None:
            return record
        record = dataclasses.replace(record, stamp=FileStamp.of(kept[1]))
        if kept[0] == self.record_path(name):
            with if_writable():  # a read-only cache: correct all the same, only hashed again next time
                self.write_record(record)
        return record

    def remove(self, name: str) -> bool:
        """Delete a cached model, any partial download and what killed writers left (temporaries of any mmgen, from
        any container or host: every writer of its weights holds its lock, as this does), and with nothing else
        there its folder (`entry_lock`); True if there was anything to delete."""
        folder = self.folder(name)
        if not folder.is_dir():
            return False
        check_removable(folder, f"model {name!r}")
        with self.lock(name):  # (a live temporary: a record restamped here, `restamped`)
            return remove_files(folder, [self.record_path(name), self.weights_path(name), *folder.glob("*.part")])

    def lock(self, name: str) -> AbstractContextManager[None]:
        """Exclusive access to one model's folder across processes (`entry_lock`)."""
        kept = (self.record_path(name), self.weights_path(name), _describes)
        return entry_lock(self.folder(name), name, "model", kept)


def _describes(record_file: Path, path: Path) -> bool:
    """Whether the cache record in `record_file` describes the weights file `path`: its very file (the stamp it
    recorded), or one of the same size and sha256. (OSError where either cannot be read.)"""
    try:
        record = read_record(CacheRecord, record_file, "cache record", "")
    except ConfigError:
        return False
    stamp = FileStamp.of(path)
    if record is None or not path.is_file() or stamp.size != record.size:
        return False
    return stamp == record.stamp or sha256_file(path) == record.sha256
