"""The batch manifest: what each output's job was (its content hash) and whether it finished, so a re-run
skips finished work and redoes changed or interrupted jobs.

OUT_DIR/batch-manifest.jsonl is an append-only log, one JSON record per line: "started" before a job writes
anything, then "done" (with the size, sha256 and stamp of every file it wrote) or "failed". The last record of an
output wins. Appends happen under a file lock and are flushed to disk, so several writers (torchrun ranks,
or two shells) can share one manifest; a record torn by a kill is an unreadable last line, and is ignored.
A re-run checks that a done job's files are still as written by their stamps (mmgen.stamps), reading only a file
whose stamp moved. A run first compacts the log (`compact`): it keeps only the records a reader still learns
anything from, so retries of a failing job do not grow it without bound.
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmgen.config import parse_json
from mmgen.disk_failures import writing
from mmgen.errors import ConfigError, FolderReplaced
from mmgen.file_modes import keep_mode
from mmgen.files import atomic_path, fsync_path, put_back, temporary_name
from mmgen.locks import file_lock
from mmgen.output_folders import NO_LONGER_THERE, check_folders, folder_identity
from mmgen.pipelines.batch.name_bytes import local_name, utf8_name
from mmgen.stamps import FileStamp, hashed, unchanged

if TYPE_CHECKING:
    from collections.abc import Mapping

MANIFEST_NAME = "batch-manifest.jsonl"
LOCK_NAME = ".batch-manifest.lock"
RUN_LOCK_NAME = ".batch-running.lock"  # held by the one batch writing into the folder (batch.run)

State = Literal["started", "done", "failed"]


def same_name(path: str) -> str:
    """How the manifest compares the paths it records (outputs and files, relative to its folder): as the UTF-8
    reading of the bytes they name (name_bytes.utf8_name), under NFC, so a record written under one Unicode form of a
    name, or under another locale, is found by a job, or a file, spelled in the other."""
    return unicodedata.normalize("NFC", utf8_name(path))


class ByPath(dict):
    """A dict keyed by manifest paths, compared as `same_name` compares them."""

    def __init__(self, items: Any = ()):
        super().__init__()
        for key, value in dict(items).items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(same_name(key), value)

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(same_name(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(same_name(key))

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(same_name(key), default)

    def pop(self, key: str, *default: Any) -> Any:
        return super().pop(same_name(key), *default)


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the output folder
    size: int
    sha256: str
    stamp: FileStamp | None = None  # when it was hashed (None: in manifests older than stamps, or it moved meanwhile)


@dataclass(frozen=True)
class Record:
    output: str  # the job's mp4, relative to the output folder: the key of its records
    state: State
    hash: str  # the job's content hash (job_hash.JobHasher.hash)
    job: int
    kind: str
    seed: int
    rank: int = 0
    at: str = ""  # UTC, ISO 8601
    files: dict[str, FileRecord] = dataclasses.field(default_factory=dict)  # "mp4", "json", ... when done
    error: str | None = None  # when failed
    batch: str | None = None  # the batch file that ran the job (Manifest.batch_named); None in manifests older than it

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {})}

    @classmethod
    def from_json(cls, data: Any) -> Record:
        """ValueError for anything but a record as `to_json` writes it (a hand-edited or foreign line)."""
        if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
            raise ValueError("not a record")
        files = {}
        for key, value in data.get("files", {}).items():
            if not isinstance(value, dict):
                raise ValueError("not a file record")
            stamp = value.get("stamp")
            if stamp is not None and not (isinstance(stamp, dict) and all(isinstance(v, int) for v in stamp.values())):
                raise ValueError("not a file stamp")
            files[key] = FileRecord(**{**value, "stamp": None if stamp is None else FileStamp(**stamp)})
            if not (isinstance(files[key].path, str) and isinstance(files[key].size, int)
                    and isinstance(files[key].sha256, str)):
                raise ValueError("not a file record")
        record = cls(**{**data, "files": files})
        if not all(isinstance(v, str) for v in (record.output, record.state, record.hash, record.kind)):
            raise ValueError("not a record")
        return record


class Manifest:
    """The manifest of one output folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.lock = self.folder / LOCK_NAME
        self.run_lock = self.folder / RUN_LOCK_NAME
        self._found = folder_identity(self.folder)  # the folder as this manifest found it (a batch's: made as it began)

    def latest(self) -> ByPath:
        """The last record of every output (by its path as `same_name` compares them)."""
        return ByPath({record.output: record for record in self.history()})

    def history(self) -> list[Record]:
        """Every readable record, oldest first."""
        try:
            return self._parsed(self.path.read_bytes().decode("utf-8", errors="replace").splitlines())
        except FileNotFoundError:
            return []

    def _parsed(self, lines: list[str]) -> list[Record]:
        records: list[Record] = []
        for line in lines:
            try:
                records.append(Record.from_json(parse_json(line, str(self.path), "batch record")))
            except (ConfigError, ValueError, TypeError, KeyError):
                continue  # a line torn by a kill, or not ours
        return records

    def append(self, record: Record) -> None:
        """Add one record, durably, whoever else is writing. FolderReplaced where the folder was moved, renamed,
        removed or replaced since this manifest found it: the outputs and records in it went with it, and a new manifest
        there would let the batch end saying jobs were done whose files are gone."""
        if self._found is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._found = folder_identity(self.folder)
        elif folder_identity(self.folder) != self._found:
            raise self._gone()
        stamped = dataclasses.replace(record, at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        line = json.dumps(stamped.to_json(), sort_keys=True) + "\n"
        with writing(self.path, self.lock), file_lock(self.lock):
            size = self._unshared()
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:  # a full disk: no torn line, and no empty manifest this append made
                with suppress(OSError):
                    if size is None:
                        self.path.unlink()
                    else:
                        os.truncate(self.path, size)
                raise

    def _gone(self) -> FolderReplaced:
        """The folder is not at its name any more: nothing is (moved, renamed or removed: mmgen cannot tell which, nor
        where it went), or another folder, or something else. The outputs finished in it are named inside it (the
        command's line: cli._interrupted.failed_line), not at paths that no longer lead to them."""
        again = "run the batch again: it redoes what went with it"
        if os.path.lexists(self.folder):
            said = "was replaced while the batch ran: the outputs and records are in the folder that was there"
            went = "are in the folder that was there, not in the one there now"
        else:
            said = f"{NO_LONGER_THERE} (moved, renamed or removed while the batch ran), with the outputs and records in it"
            went = "went with it"
        return FolderReplaced(f"cannot write {self.path}: {self.folder} {said}", hint=again,
                              folder=Path(os.path.abspath(self.folder)), went=went, then=again)

    def _unshared(self) -> int | None:
        """The log's size (None where there is none), made this folder's own first where it is a hard link: a project
        copied with `cp -al` shares it with the original, and an append there changed the original's records (`g.mp4
        exists and was changed since this batch wrote it`). A private copy replaces the link, as `compact` does."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        if stat.st_nlink > 1:  # (not files.atomic_path: no stop, nor a group's undo, comes between this and the append)
            private = temporary_name(self.path)
            try:
                private.write_bytes(self.path.read_bytes())
                keep_mode(self.path, private)  # the original's (a 600 manifest stays private)
                fsync_path(private)
                put_back(private, self.path)  # renamed over it, the folder fsync-ed
            finally:
                with suppress(FileNotFoundError):
                    private.unlink()
        return stat.st_size

    def compact(self) -> bool:
        """Rewrite the log (atomically, under its lock) with only the records that still say something: each output's
        last record, its last "started" one unless it ended done since (written.Written reads a start only for a job
        that is not done), and for each file the last "done" record listing it — what `latest` and written.Written
        read from it, unchanged. Torn and foreign lines go too. True if it was rewritten."""
        with writing(self.path, self.lock), file_lock(self.lock):
            try:
                lines = self.path.read_bytes().decode("utf-8", errors="replace").splitlines()
            except FileNotFoundError:
                return False
            records = self._parsed(lines)
            last: dict[tuple[str, str], int] = {}  # what each record is the last of → its place
            for place, record in enumerate(records):
                last[("output", same_name(record.output))] = place
                if record.state == "started":
                    last[("started", same_name(record.output))] = place
                elif record.state == "done":
                    for file in record.files.values():
                        last[("file", same_name(file.path))] = place
            for output in {same_name(record.output) for record in records}:
                if records[last[("output", output)]].state == "done":
                    last.pop(("started", output), None)
            kept = sorted(set(last.values()))
            if len(kept) == len(lines):
                return False
            with atomic_path(self.path) as temp:
                temp.write_text("".join(json.dumps(records[place].to_json(), sort_keys=True) + "\n" for place in kept),
                                encoding="utf-8")
            return True

    def describe_files(self, files: dict[str, Path]) -> dict[str, FileRecord]:
        """What a finished job wrote, for its "done" record."""
        described = {}
        for key, path in files.items():
            check_folders(path)  # its folder is still the one the job wrote into (output_folders.same_folders)
            if path.is_file():
                sha256, stamp = hashed(path)
                described[key] = FileRecord(self.relative(path), path.stat().st_size, sha256, stamp)
        return described

    def intact(self, record: Record, at: Mapping[str, str] | None = None) -> bool:
        """True if every file a "done" record lists is still there, with its recorded size and content. `at`: where a
        file is instead, by its recorded path as `same_name` compares them (the job's spelling of its name, or the one
        there in another Unicode form: spelled_paths)."""
        at = ByPath(at or {})
        return bool(record.files) and all(self.unchanged(file, at.get(file.path)) for file in record.files.values())

    def unchanged(self, file: FileRecord, at: str | None = None) -> bool:
        """True if the file is there as recorded (or at `at`): its size and sha256, read only when its stamp moved."""
        try:
            return unchanged(self.folder / local_name(at or file.path), file.size, file.sha256, file.stamp)
        except (OSError, ValueError):  # ValueError: a name this locale cannot write
            return False

    def batch_named(self, batch_file: Path) -> str:
        """How a record names the batch file that ran its job: relative to this folder where the folder is inside
        the batch file's (a project folder renamed, moved or copied whole still names it), else by its real path."""
        real, folder = batch_file.resolve(), self.folder.resolve()
        if folder.is_relative_to(real.parent):
            return Path(os.path.relpath(real, folder)).as_posix()
        return str(real)

    def ran_by(self, record: Record, batch_file: Path) -> bool:
        """Whether `batch_file` ran the record's job: named as `batch_named` names it, or by its real path as mmgen
        named it before 2026-12-02 (None: in manifests older than the batch field)."""
        return record.batch in (None, str(batch_file.resolve()), self.batch_named(batch_file))

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.folder.resolve()).as_posix()
