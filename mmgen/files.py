"""Atomic files: a file appears complete under its final name, or not at all (DESIGN §8) — the one place that
renames into place.

Writers work on a temporary file beside the target (same directory, so `os.replace` is an atomic rename on
one filesystem; same extension, so muxers infer the format; a unique name, so two writers never share one),
which is fsync-ed and then renamed, and the folder is fsync-ed after the rename so the new name survives a
power loss too. A file written again keeps the mode and group of the one it replaces (mmgen.file_modes). (Whether a path
may become an output at all is asked earlier: mmgen.output_checks.)

A new output is committed with a hard link, which fails if the name exists: of two runs writing one name at
once, the later one stops (OutputExists) instead of silently replacing the other's file. `kept_together` makes
the files of one output appear together: if writing one fails, the others it committed are taken back again, and
the files they replaced (--overwrite), kept aside under hidden names until then, are put back; a file `retire`
removes inside the block is kept aside the same way (how a file and its record are read meanwhile: mmgen.kept_states).
A temporary's name says which process made it, so a later run can remove what a killed one left (mmgen.temporaries). What a failing write (or an input's failing read) is
said as, and whose trouble it is, is mmgen.disk_failures'; lock files are mmgen.locks'.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from mmgen import temporaries
from mmgen.disk_failures import named_as, reading, writing
from mmgen.errors import MediaError, OutputExists
from mmgen.file_modes import keep_mode
from mmgen.output_checks import check_writable, name_max
from mmgen.output_folders import check_folders
from mmgen.runtime.stop_signals import check_stop, stops_held
from mmgen.weights.names import PATH_MAX


@dataclass(frozen=True)
class _Commit:
    """A file committed (or removed: no inode) inside `kept_together`, by identity, and the file it replaced, kept
    aside until the block ends."""

    target: Path
    device: int | None
    inode: int | None
    replaced: Path | None  # a hidden hard link to (or copy of) what was at `target` before

    def undo(self) -> None:
        """Put back what was at `target` (or remove it, if nothing was), unless another writer replaced it since."""
        with suppress(OSError):
            if self.inode is None:  # removed: back, unless a file took its name since
                if not os.path.lexists(self.target):
                    put_back(self.replaced, self.target)
            elif _identity(self.target) == (self.device, self.inode):
                if self.replaced is None:
                    self.target.unlink()
                else:
                    put_back(self.replaced, self.target)
        self.forget()

    def forget(self) -> None:
        if self.replaced is not None:
            self.replaced.unlink(missing_ok=True)


def put_back(kept: Path, target: Path) -> None:
    """Rename the file `kept` aside (by a `kept_together` block that failed, or by a process that died in one) back
    to `target`, over whatever is there, for good (the folder is fsync-ed)."""
    os.replace(kept, target)
    _fsync(target.parent)


def _identity(path: Path) -> tuple[int, int]:
    info = os.lstat(path)
    return info.st_dev, info.st_ino


@dataclass
class _Group:
    """What a `kept_together` block committed so far, and what to do once all of it is kept (`when_kept`)."""

    commits: list[_Commit] = field(default_factory=list)
    kept: list[Callable[[], object]] = field(default_factory=list)
    outer: _Group | None = None

    def retired(self, target: Path) -> Path | None:
        """Where the file `retire` moved aside from `target` in this block (or one around it) now is: the file a
        write there replaces, whose mode and group it keeps."""
        for commit in reversed(self.commits):
            if commit.target == target and commit.inode is None:
                return commit.replaced
        return self.outer.retired(target) if self.outer is not None else None


_group: ContextVar[_Group | None] = ContextVar("files_kept_together", default=None)


def temporary_name(target: Path) -> Path:
    """A hidden, per-call unique sibling of `target` with the same extension (a shared temporary name
    would let two concurrent writers corrupt each other's file), naming the process that writes it, so that a
    later run can tell it left behind (mmgen.temporaries). The stem is shortened where needed, so the name, and the
    whole path, fit whenever the target's do (output_checks.check_name_length refuses a target whose folder leaves
    no room for it)."""
    middle = f".{temporaries.tag()}.partial"
    folder = len(os.fsencode(target)) - len(os.fsencode(target.name))  # the folder as `target` spells it, and its /
    room = min(name_max(target.parent), PATH_MAX - folder) - len(".") - len(middle) - len(os.fsencode(target.suffix))
    stem = target.stem
    while len(os.fsencode(stem)) > max(room, 0):
        stem = stem[:-1]
    return target.with_name(f".{stem}{middle}{target.suffix}")


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's, recursively for its files) data to disk."""
    if path.is_dir():
        for child in path.iterdir():
            fsync_path(child)
    _fsync(path)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders cannot be opened on Windows: nothing more we can do there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _commit(temp: Path, target: Path, replace: bool) -> None:
    """Rename `temp` to `target`; unless `replace`, never over an existing `target` (OutputExists)."""
    if replace:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # atomic, and fails if the name was taken meanwhile
    except FileExistsError:
        raise OutputExists(f"{target} already exists") from None
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(target):
            raise OutputExists(f"{target} already exists") from None
        os.replace(temp, target)
    else:
        temp.unlink()


@contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (an empty folder when `folder`); on normal exit it is fsync-ed and
    replaces `path` (a previous folder of that name is removed first; a file only if `replace`, else
    OutputExists), on any exception it is deleted.

    with atomic_path(run / "config.yaml") as tmp:
        tmp.write_text(text)
    """
    check_stop()  # a stop that a library swallowed: nothing is written after it (stop_signals)
    target = Path(path)
    check_folders(target)  # not even a temporary in a folder put in an output folder's place
    temp = temporary_name(target)
    naming = named_as(temp, target) if folder else nullcontext()  # a file inside: named by where it will be
    with writing(target, temp), naming:  # a failing disk: one line naming `target`, not the temporary (nor an input)
        if folder:
            temp.mkdir()
        try:
            yield temp
            if not temp.exists():
                raise MediaError(f"cannot write {target}: nothing was written")
            group = _group.get()
            keep_mode((group and group.retired(target)) or target, temp)  # one `retire` moved aside, or the one there
            fsync_path(temp)
            check_stop()  # nor put in place
            check_folders(target)
            if folder and target.is_dir():
                shutil.rmtree(target)
            with stops_held():  # the rename and its undo's record are one step: a stop comes before or after both
                undo = None
                if group is not None:  # recorded first: the rename keeps the temporary's inode, the undo's mark
                    replaced = _kept_aside(target) if replace and not folder else None
                    undo = _Commit(target, *_identity(temp), replaced)
                    group.commits.append(undo)
                try:
                    _commit(temp, target, replace or folder)
                except BaseException:  # before the rename (the name was taken) or after it (the temporary stayed)
                    if undo is not None:
                        group.commits.remove(undo)
                        undo.undo()
                    raise
            _fsync(target.parent)
        finally:
            _remove(temp)


def _kept_aside(target: Path) -> Path | None:
    """A hidden second name for the file at `target`, about to be replaced (None if there is none), so that
    `kept_together` can put it back."""
    if not os.path.lexists(target):
        return None
    aside = temporary_name(target)
    try:
        os.link(target, aside, follow_symlinks=False)
    except OSError:  # a filesystem without hard links
        shutil.copy2(target, aside, follow_symlinks=False)
    return aside


def retire(path: Path) -> None:
    """Remove the file at `path` (an output's file that a replacing run does not write again); inside
    `kept_together` it is only moved aside until the block ends, and comes back if the block fails (and a file
    written at `path` in the block keeps its mode and group, as over the file itself)."""
    if path.is_dir():  # a folder put at an output's name since it was planned: the user's, never moved or removed
        raise MediaError(f"cannot write {path}: it is a directory")
    group = _group.get()
    if group is None:
        path.unlink(missing_ok=True)
        return
    aside = temporary_name(path)
    with stops_held():
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        group.commits.append(_Commit(path, None, None, aside))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text`, atomically and durably."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A user-facing output: refused up front if it exists (unless `overwrite`) or cannot be written, then
    written through `atomic_path`, and never over a file that appeared meanwhile (unless `overwrite`).
    A failing disk (full, quota, read-only) is one line naming `path` (mmgen.disk_failures).
    """
    target = check_writable(path, overwrite)
    with atomic_path(target, replace=overwrite) as temp:
        yield temp


def copy_into(source: Path, temporary: Path) -> None:
    """Copy the input `source` to `temporary` (an `atomic_path`'s): a failing read names `source` (reading), a
    failing write is the temporary's target's."""
    with open(source, "rb") as inputs, open(temporary, "wb") as output:
        while True:
            with reading(source):
                chunk = inputs.read(1 << 20)
            if not chunk:
                return
            output.write(chunk)


@contextmanager
def kept_together() -> Iterator[None]:
    """The files committed inside the block appear together or not at all: if the block fails, each one it
    committed is taken back, last first, and a file it replaced is put back (unless another writer has replaced
    it since). So with --overwrite, a clip's new files replace its old ones all together, or none of them do.

    A stop signal (Ctrl-C, SIGTERM, SIGHUP) cannot split this: each commit and the record of its undo are one step
    (stops_held), and so is the end of the block, where the files are kept. A stop before that end takes every file
    back; one after it finds them all kept, and the `when_kept` callbacks run all the same, each of them, after the
    hold: a stop waits for no callback (a --json line printed to a pipe nobody reads). Inside another
    `kept_together`, what the block committed becomes the outer block's, kept or taken back with it."""
    outer = _group.get()
    group = _Group(outer=outer)
    token = _group.set(group)
    due: list[Callable[[], object]] = []
    try:
        try:
            yield
            with stops_held():
                kept, group.commits = group.commits, []  # kept: a stop raised as the hold ends takes none back
                if outer is not None:
                    outer.commits.extend(kept)
                    outer.kept.extend(group.kept)
                else:
                    for commit in kept:
                        with suppress(OSError):
                            commit.forget()
                    due = group.kept
        except BaseException:
            for commit in reversed(group.commits):
                commit.undo()
            raise
        finally:
            _group.reset(token)
    finally:  # also when a stop came as the hold ended: the files are kept, and that stop goes on after
        raised = _call_each(due)
    if raised is not None:
        raise raised


def _call_each(callbacks: list[Callable[[], object]]) -> BaseException | None:
    """Call every one of `callbacks`, even after one raised (a stop while it printed: what the others do for the
    kept files still happens); the first exception raised, once all have run."""
    raised = None
    for callback in callbacks:
        try:
            callback()
        except BaseException as e:
            raised = raised or e
    return raised


def when_kept(callback: Callable[[], object]) -> None:
    """Call `callback` once the files committed so far are kept: at the end of the `kept_together` block (the
    outermost one), right after the step that keeps them — and even if a stop came during that step; at once
    outside one."""
    group = _group.get()
    if group is None:
        callback()
    else:
        group.kept.append(callback)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with reading(path), open(path, "rb") as f:  # a failing disk, a file mmgen may not read: not a wrong sha256
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
