"""Registered adapters: `mmgen models import RUN/adapter.safetensors --name my-style` keeps a verified copy in
the cache (<cache>/adapters/NAME/; adapters.registration), so `--adapter my-style[:WEIGHT]` works from anywhere,
`models list` shows it with the base model it belongs to, `models verify` re-hashes it and `models rm` removes it.
This module finds, reads, lists, verifies and removes them."""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen.config import read_record
from mmgen.errors import ChecksumMismatch, ConfigError, InvalidSetting, MmgenError, StorageError
from mmgen.files import sha256_file
from mmgen.kept_states import last_kept, looked_again
from mmgen.weights import sidecar
from mmgen.weights.cache import cache_root, check_removable, damaged_folder, entry_names, own_path
from mmgen.weights.catalog import CACHED, DAMAGED, MISSING, Verdict, check_file, damaged_verdict
from mmgen.weights.entry_lock import entry_lock, remove_files
from mmgen.weights.names import is_name, is_path

if TYPE_CHECKING:
    from mmgen.adapters.file import Adapter  # its module imports torch: loaded where an adapter is read

FILE = "adapter.safetensors"
RECORD = "adapter.json"


@dataclass(frozen=True)
class AdapterRecord:
    name: str
    base: str
    base_sha256: str
    rank: int
    alpha: float
    targets: str
    sha256: str  # of the adapter file
    size: int
    source: str
    imported_at: str

    def as_dict(self, file: Path | None = None) -> dict:
        """Its --json object; `file`: its adapter file, looked at as `models verify` looks (no hash): missing where
        it is not there (a damaged one's: DamagedAdapter's)."""
        fields = asdict(self)  # its weights stand cached, as a cached model's
        status = MISSING if file is not None and not file.is_file() else CACHED
        return {"kind": "adapter", "name": fields.pop("name"), "status": status, **fields}


@dataclass(frozen=True)
class DamagedAdapter:
    """A registered adapter whose record cannot be read: said as such (and how to clear it) where adapters are
    listed or verified, not the end of the listing."""

    name: str  # the adapter's, or adapters/ where that folder is what is damaged (weights.cache.damaged_folder)
    problem: str  # the one line reading the record met, with its hint
    path: Path  # what is damaged: the record, or the folder
    mend: str  # the hint: `mmgen models rm NAME`, or how to mend a linked adapters/

    def as_dict(self) -> dict:
        return {"kind": "adapter", "name": self.name, "status": DAMAGED, "description": self.problem}


def folder_of(name: str, cache_dir: Path | None = None) -> Path:
    """The folder of the registered adapter `name` (DamagedEntry if it, or adapters/, is a symlink)."""
    return own_path(cache_dir or cache_root(), "adapters", name)


def locked(name: str) -> AbstractContextManager[None]:
    """The registered adapter `name`'s folder held by this process alone (weights.entry_lock, as a model's):
    made if missing, what a registration killed half way (kill -9) took away put back, and what it left removed."""
    folder = folder_of(name)
    return entry_lock(folder, name, "adapter", (folder / RECORD, folder / FILE, _describes))


def files_of(source: str) -> list[Path]:
    """The files an `--adapter` value names, by the rule `-m` follows (weights.names.is_path): a path — with a
    folder separator, or ending in .safetensors — is that file; anything else is a registered adapter's name, whose
    file and record are those as last kept (`_kept`; none if there is no such adapter), never a file of that name in
    the current folder."""
    if is_path(source):
        return [Path(source), *filter(None, sidecar.kept_files(Path(source)))]  # and what is read for it
    kept = _kept(source) if is_name(source) else None
    return [kept[1], kept[0]] if kept is not None else []


def read_file(source: str) -> Path:
    """The file an `--adapter` value is read from (after session.prepare found it): a path's as last kept
    (file.read_adapter), a registered adapter's copy."""
    if is_path(source):
        return sidecar.kept_files(Path(source))[0]
    file = registered_file(source)
    if file is None:
        resolve(source)  # raises: no registered adapter of that name
    return file


def registered_file(name: str, cache_dir: Path | None = None) -> Path | None:
    """The registered copy behind `--adapter NAME`, if NAME is a registered adapter (in cache folder `cache_dir`)."""
    kept = registered(name, cache_dir)
    return kept[1] if kept is not None else None


def registered(name: str, cache_dir: Path | None = None) -> tuple[Path, Path] | None:
    """The record file and adapter file behind `--adapter NAME` as last kept (`_kept`), if NAME is a registered
    adapter (in cache folder `cache_dir`). Finding them hashes the adapter file while a registration over it is in
    flight or was killed half way: a command finds them once and passes them along (`found_record`)."""
    return _kept(name, cache_dir) if is_name(name) else None


def found_record(name: str, kept: tuple[Path, Path]) -> tuple[AdapterRecord, Path] | None:
    """The record and file of the registered adapter `name` where `registered` found them (`kept`), not looked up
    again; looked up once more (kept_states.looked_again's way) where a registration begun since moved the record aside.
    None: removed meanwhile."""
    record = _read(name, kept[0])
    if record is None and (kept := _kept(name)) is not None:
        record = _read(name, kept[0])
    return None if record is None else (record, kept[1])


def _kept(name: str, cache_dir: Path | None = None) -> tuple[Path, Path] | None:
    """The record file and adapter file of the registered adapter `name` as last kept: its own, or while a
    registration over it is in flight or was killed half way (put back by the next one), the old ones it kept aside
    (kept_states.last_kept)."""
    folder = folder_of(name, cache_dir)
    return last_kept(folder / RECORD, folder / FILE, _describes)


def _describes(record_file: Path, path: Path) -> bool:
    """Whether the adapter record in `record_file` describes the file `path` (its size and sha256)."""
    try:
        record = read_record(AdapterRecord, record_file, "adapter record", "")
    except ConfigError:
        return False
    return record is not None and path.stat().st_size == record.size and sha256_file(path) == record.sha256


def names() -> list[str]:
    """The registered adapters' names, damaged ones too (as `models list` finds them), without reading them."""
    return entry_names(cache_root(), "adapters", RECORD, _kept)


def records() -> list[AdapterRecord | DamagedAdapter]:
    """Every registered adapter, by name: its record, or what is wrong with it (a record cut short or not an
    adapter's) — one damaged record never hides the others."""
    root = cache_root()
    damaged = damaged_folder(root, "adapters")  # adapters/ a link: one row, whatever it holds
    found: list[AdapterRecord | DamagedAdapter] = [] if damaged is None else [
        DamagedAdapter("adapters/", str(damaged), damaged.link, damaged.hint)]
    for name in entry_names(root, "adapters", RECORD, _kept):
        try:
            found.append(_record(name))
        except StorageError:  # the machine's trouble (a failing disk, no permission), not a damaged record
            raise
        except MmgenError as e:  # ConfigError: unreadable JSON (with how to clear it), or not an adapter's record
            mend = e.hint or f"run `mmgen models rm {name}`"
            problem = str(e) if e.hint else f"{e} ({mend})"
            found.append(DamagedAdapter(name, problem, root / "adapters" / name / RECORD, mend))  # a path only
    return found


def listed() -> list[dict]:
    """Every registered adapter's --json object, as `models list` and doctor give them: each status looked at as
    `models verify` looks (no hash), so one whose file was removed reads missing, not cached."""
    return [entry.as_dict(folder_of(entry.name) / FILE) if isinstance(entry, AdapterRecord) else entry.as_dict()
            for entry in records()]


def _record(name: str) -> AdapterRecord | None:
    kept = _kept(name)
    return _read(name, kept[0]) if kept is not None else None


def _read(name: str, record_file: Path) -> AdapterRecord | None:
    return read_record(AdapterRecord, record_file, "adapter record", f"run `mmgen models rm {name}`")


def find(name: str) -> AdapterRecord | None:
    """The record of the registered adapter `name`, or None."""
    kept = registered(name)
    return None if kept is None or (found := found_record(name, kept)) is None else found[0]


def verify(name: str | None = None) -> list[Verdict]:
    """Re-hash the registered adapters (one, or all) against the sha256 recorded when they were registered."""
    chosen = [r for r in records() if name in (None, r.name)]
    where = cache_root() / "adapters"  # a path only
    return [damaged_verdict(r.name, r.problem, r.path, r.mend, "adapter") if isinstance(r, DamagedAdapter)
            else _verdict(r, where) for r in chosen]


def _verdict(record: AdapterRecord, where: Path) -> Verdict:
    """`models verify`'s verdict on a registered adapter: its record and file looked at together, once more where
    they are not alike (kept_states.looked_again, as `--adapter NAME` does) — a replacement between the reads is no damage."""
    look = looked_again(lambda: _look(record.name), _alike)
    if look.record is None:  # removed as it was verified: as it was listed
        return check_file(record.name, where / record.name / FILE, record.sha256, kind="adapter")
    return check_file(record.name, look.file, look.record.sha256, "adapter", look.actual)  # None: missing


def remove(name: str) -> bool:
    """Delete the registered adapter `name` and what killed registrations left in its folder, from any container or
    host (weights.entry_lock.remove_files, as a model's), a folder holding only that too; True if there was anything
    to delete."""
    if not is_name(name):  # a path or "..": never deletes outside the store
        return False
    folder = folder_of(name)
    if not folder.is_dir():
        return False
    check_removable(folder, f"adapter {name!r}")
    with locked(name):  # never while it is being registered
        return remove_files(folder, [folder / RECORD, folder / FILE])


def resolve(source: str) -> Adapter:
    """An `--adapter` value's adapter: a file, or a registered name (its copy checked against its record)."""
    from mmgen.adapters.file import read_adapter

    if is_path(source):
        return read_adapter(source)
    look = looked_again(lambda: _look(source, whole=True), _alike)  # one state, last kept
    if look.record is None:
        here = Path(source).is_file()  # a file of that name here is not taken: a name is the store's (files_of)
        raise InvalidSetting(
            "adapter", "no registered adapter of that name"
            + (f"; to use the file {source} in this folder, give it as ./{source}" if here else ""), source,
            hint="a path (with a / or ending in .safetensors) is a file, a bare name a registered adapter: "
            "register one with `mmgen models import FILE --name NAME`",
        )
    if look.actual is None:  # removed by hand: said as `models verify` says it, not as an unexpected error
        raise InvalidSetting(
            "adapter", f"registered, but its file is missing ({look.file})", source,
            hint=f"import it again (mmgen models import FILE --name {source} --overwrite), or forget it "
            f"(mmgen models rm {source})",
        )
    if look.actual != look.record.sha256:
        raise ChecksumMismatch(
            f"adapter {source}: {look.file} has sha256 {look.actual[:12]}…, registered as {look.record.sha256[:12]}…",
            hint=f"import it again: mmgen models import FILE --name {source} --overwrite",
        )
    return read_adapter(folder_of(source) / FILE, read_from=look.file, named=source, data=look.data)  # `file`:
    # maybe what a registration kept aside


@dataclass(frozen=True)
class _Look:
    """One look at a registered adapter: its record and file as last kept (`_kept`), and the file's sha256 (None:
    missing) — with its bytes, where they are to be loaded (what is hashed is what is loaded)."""

    record: AdapterRecord | None
    file: Path | None
    actual: str | None
    data: bytes | None = None


def _look(name: str, whole: bool = False) -> _Look:
    """A look at the registered adapter `name` (`whole`: its file read once, into memory, to be loaded)."""
    from mmgen.adapters.file import read_whole

    kept = _kept(name)
    record = _read(name, kept[0]) if kept is not None else None
    if record is None:  # (or a record kept aside, gone as it was read)
        return _Look(None, None, None)
    try:
        data = read_whole(kept[1]) if whole else None
        actual = hashlib.sha256(data).hexdigest() if whole else sha256_file(kept[1])
    except FileNotFoundError:
        return _Look(record, kept[1], None)
    return _Look(record, kept[1], actual, data)


def _alike(look: _Look) -> bool:
    """Whether a look found a record and the file it describes (else look again: kept_states.looked_again)."""
    return look.record is not None and look.actual == look.record.sha256
