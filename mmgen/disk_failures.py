"""What an OSError met while mmgen writes an output (or reads an input to make one) means for the user: one line
naming the file, and whose trouble it is — a failing disk is the machine's (exit 1, StorageError), a read-only
filesystem the place the user chose (exit 2); anything else stays the OSError it is. A file written inside a
temporary folder (a checkpoint's) is named by where it will be (`named_as`)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.errors import MediaError, MmgenError, StorageError, UsageError

DISK_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}  # the output's disk failed: exit 1
READ_FAILURES = {errno.EIO}  # of those, what a read meets too (a full disk, a quota, a size limit: only a write)
DENIED = {errno.EACCES, errno.EPERM}  # a file's owner or mode keeps mmgen out: the machine's trouble, not the file's
# (temporary, target) of each `atomic_path(folder=True)` being written: a file inside is named by where it will be
_folders: ContextVar[tuple[tuple[Path, Path], ...]] = ContextVar("folders_written", default=())


@contextmanager
def named_as(temporary: Path, target: Path) -> Iterator[None]:
    """While the block runs, a failure under the folder `temporary` is named by where it will be, under `target`."""
    token = _folders.set((*_folders.get(), (temporary, target)))
    try:
        yield
    finally:
        _folders.reset(token)


def _final_name(path: Path) -> Path:
    """`path`, or where it will be once the temporary folder it is in is committed (a checkpoint's file)."""
    for temp, target in reversed(_folders.get()):
        if path.is_relative_to(temp):
            return target / path.relative_to(temp)
    return path


def write_failure(target: Path, error: OSError) -> MmgenError | OSError:
    """The one line for an OSError met while writing `target`, with its exit code decided here for every writer:
    a failing disk (full, over quota, file too large, I/O error) is the machine's trouble, exit 1 (StorageError);
    a read-only filesystem is the place the user chose, exit 2 (MediaError); anything else is `error` itself."""
    target = _final_name(target)
    if error.errno in DISK_FAILURES:
        return StorageError(f"cannot write {target}: {error.strerror or error}",
                            hint="free some space, or raise the file size limit, and run it again")
    if error.errno == errno.EROFS:
        return MediaError(f"cannot write {target}: {error.strerror or error}")
    if error.errno == errno.ENAMETOOLONG:  # said of `target`, never of the temporary (or a file inside one) it named
        return _too_long(target)
    return error


def _too_long(target: Path) -> MmgenError:
    """Why `target`, or a temporary it is written through, has a name the system refuses (ENAMETOOLONG): in
    check_name_length's words where they find it (the folder too long for a temporary beside it), else plainly."""
    from mmgen.output_checks import check_name_length
    from mmgen.weights.names import PATH_MAX

    try:
        check_name_length(target)
    except UsageError as e:
        return e
    return UsageError(f"cannot write {target}: its path, with the temporaries it is written through, is longer than "
                      f"the system takes ({PATH_MAX} bytes)", hint="choose a shorter path with -o")


def read_failure(source: Path, error: OSError) -> MmgenError | OSError:
    """The one line for an OSError met while reading the input `source`: an I/O error, or a permission the file's
    owner or mode does not give, is the machine's trouble, exit 1 (StorageError) — never a reason to call the file
    damaged (to be got again, or removed); anything else is `error` itself."""
    if error.errno in READ_FAILURES:
        return StorageError(f"cannot read {source}: {error.strerror or error}",
                            hint="the disk holding it failed; copy it from a good one and run it again")
    if error.errno in DENIED:
        return StorageError(f"cannot read {source}: permission denied",
                            hint="the file is whole as far as mmgen knows: give this user read access to it")
    return error


@contextmanager
def writing(target: str | os.PathLike, *through: Path) -> Iterator[None]:
    """An OSError of the block is a failure to write `target` (or the files written to make it, `through`: its
    temporary, a file inside that, its lock): a failing disk or a read-only filesystem is one line naming it
    (write_failure), not the bare OS error — for every file mmgen writes or appends to. Unless it names another
    file, as a failure to read an input does (`open`, PyAV): then it is that input's (read_failure)."""
    try:
        yield
    except OSError as e:
        if (failure := failure_writing(Path(target), e, *through)) is e:
            raise
        raise failure from None


def failure_writing(target: Path, error: OSError, *through: Path) -> MmgenError | OSError:
    """The one line for an OSError met while writing `target` (`writing`): an input's (read_failure) when it names
    a file other than `target` and `through`, else `target`'s (write_failure)."""
    source = _input_named(error, target, *through)
    return read_failure(source, error) if source is not None else write_failure(target, error)


@contextmanager
def if_writable() -> Iterator[None]:
    """A write that only saves work later (a record's new stamp): where the disk takes none — an OSError, or the
    one line `writing` made of it (a read-only cache, a full disk) — it is skipped, and nothing said."""
    try:
        yield
    except OSError:
        pass
    except MmgenError as e:
        if not isinstance(e.__context__, OSError):  # what `writing` raises, it raises from the OSError it met
            raise


@contextmanager
def reading(source: str | os.PathLike) -> Iterator[None]:
    """An OSError of the block is a failure to read the input `source` (read_failure), also inside an
    `atomic_path` block, whose `writing` would otherwise take an error that names no file for its own."""
    try:
        yield
    except OSError as e:
        if (failure := read_failure(Path(source), e)) is e:
            raise
        raise failure from None


def _input_named(error: OSError, *outputs: Path) -> Path | None:
    """The file `error` names when it is not one of `outputs` (nor inside one) and the failure is one a read meets:
    an input. None when the error is an output's, or names no file (a write to an open file, say)."""
    if error.errno not in READ_FAILURES or error.filename is None:
        return None
    named = [Path(os.fsdecode(n)) for n in (error.filename, error.filename2) if isinstance(n, (str, bytes, os.PathLike))]
    if not named or any(n.is_relative_to(o) for n in named for o in outputs):
        return None  # e.g. a copy's source and its destination, both named: the write may be what failed
    return _final_name(named[0])
