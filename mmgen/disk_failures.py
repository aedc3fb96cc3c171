"""What an OSError met while mmgen writes an output (or reads an input to make one) means for the user: one line
naming the file, and whose trouble it is — a failing disk is the machine's (exit 1, StorageError), a read-only
filesystem the place the user chose (exit 2); anything else stays the OSError it is. A file written inside a
temporary folder (a checkpoint's) is named by where it will be (`named_as`). And what any error that ran out of the
machine's memory or open files means (`resource_failure`): one line saying so, exit 1."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mmgen.errors import (
    MediaError,
    MmgenError,
    ResourceError,
    StorageError,
    UsageError,
    in_callers_words,
    output_named,
)
from mmgen.runtime.collective_failures import collective_failure

DISK_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}  # the output's disk failed: exit 1
READ_FAILURES = {errno.EIO}  # of those, what a read meets too (a full disk, a quota, a size limit: only a write)
LIMITS = {errno.ENOMEM, errno.EMFILE, errno.ENFILE}  # the machine's memory, or the open files it allows: exit 1
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
                      f"the system takes ({PATH_MAX} bytes)", hint=f"choose a shorter path with {output_named()}")


def name_too_long(error: OSError) -> UsageError:
    """The one line for ENAMETOOLONG of a path given to any option, argument or API parameter (the command line
    and the Python API say it alike, exit 2): the path, with one name in it over 255 bytes, or the whole path over
    PATH_MAX."""
    from mmgen.weights.names import PART_MAX, PATH_MAX

    filename = error.filename
    encoded = os.fsencode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else b""
    if len(encoded) > PATH_MAX and max(map(len, encoded.split(b"/"))) <= PART_MAX:
        why = f"path too long ({len(encoded)} bytes; the system takes at most {PATH_MAX} in a path)"
    else:
        why = f"file name too long (the filesystem takes at most {PART_MAX} bytes per name)"
    return UsageError(f"{os.fsdecode(filename) if encoded else filename}: {why}")


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
    if source is not None:
        return read_failure(source, error)
    return _temporary_gone(target, error, through) or write_failure(target, error)


def _temporary_gone(target: Path, error: OSError, through: tuple[Path, ...]) -> MmgenError | None:
    """The one line for a temporary of `target` (one of `through`, or a file inside one) deleted while it was being
    written — by another process, one sweeping that folder's temporaries — where the bare error named only the
    temporary (a batch job failed with "FileNotFoundError: ... .partial.json"). None for any other error."""
    named = error.filename
    if error.errno != errno.ENOENT or not isinstance(named, (str, bytes, os.PathLike)):
        return None
    gone = Path(os.fsdecode(named))
    if not any(gone.is_relative_to(t) for t in through):
        return None
    return StorageError(f"cannot write {_final_name(target)}: its temporary {gone.name} was deleted while it was "
                        "being written", hint="is another program removing files in that folder? run it again")


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


def memory_hint() -> str:
    """How to need less memory, in its caller's words: `--batch-size` on the command line, `batch_size=` to the
    Python API (a pipeline call's argument, FinetuneConfig's field); a batch job, which makes one clip at a time and
    takes no batch size, by what its file sets: the model, and the upscaler's second pass."""
    at_once = "ask for less at once: fewer or shorter clips, a smaller "
    less = in_callers_words(f"{at_once}--batch-size", f"{at_once}batch_size=",
                            "have the job need less: a smaller `model:`, or `upscale: false`")
    return f"close other programs, or {less}"


# How libraries say an errno in a RuntimeError (torch's c10: "unable to open file <PATH> in read-only mode: Too many
# open files (24)", "unable to mmap 512 bytes from file <PATH>: Cannot allocate memory (12)"): the file, if named
_LIBRARY_ERRNO = re.compile(r"(?:<(?P<file>[^<>]+)>.*)?: (?P<strerror>[^:()]+) \((?P<errno>\d+)\)$", re.DOTALL)
_CPU_ALLOCATOR = re.compile(r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory): you tried to allocate (\d+) bytes")
_NUMPY_ALLOCATION = re.compile(r"^Unable to allocate ([\d.]+ [KMGTP]i?B)")  # numpy's MemoryError (_ArrayMemoryError)
_ACCELERATOR_ALLOCATION = re.compile(r"Tried to allocate ([\d.]+ [KMGTP]i?B)")  # torch.OutOfMemoryError (CUDA)
# dlopen's words for a library it could not map into memory (ENOMEM), also inside the ImportError numpy raises for
# its own (its "Original error was: …"); the same words ending in a reason (a noexec mount's "Operation not
# permitted") are not about memory
_UNMAPPED = re.compile(r"([^\s:/]+\.so[^\s:]*): failed to map segment from shared object(?!:)")



def resource_failure(error: BaseException) -> ResourceError | None:
    """The one line for an error that ran out of the machine's memory, or of the files a process may have open, by
    its type and errno — a MemoryError, an OSError ENOMEM/EMFILE/ENFILE, torch's words for them in a RuntimeError,
    a shared library that could not be mapped as it was imported — whatever raised it; and for a torchrun job's
    collective that failed (PeerEnded, collective_failures: another process of the job ended or stopped answering,
    where the raw text of gloo or NCCL named the C++ file, `GLHF! 🏖️`); None for any other error."""
    if isinstance(error, MemoryError):
        allocation = _NUMPY_ALLOCATION.search(str(error))
        return _out_of_memory(f"allocating {allocation[1]}" if allocation else None)
    if isinstance(error, OSError) and error.errno in LIMITS:
        return _short_of(error.errno, error.filename)
    if isinstance(error, RuntimeError):
        text = str(error).strip()
        if type(error).__name__ == "OutOfMemoryError":  # torch's, for a GPU's memory
            allocation = _ACCELERATOR_ALLOCATION.search(text)
            cpu = in_callers_words("--device cpu", "device='cpu'")
            return ResourceError("the GPU ran out of memory" + (f" allocating {allocation[1]}" if allocation else ""),
                                 hint=f"{memory_hint()}, or {cpu}")
        if allocation := _CPU_ALLOCATOR.search(text):
            from mmgen.terminal import size_text

            return _out_of_memory(f"allocating {size_text(int(allocation[1]))}")
        said = _LIBRARY_ERRNO.search(text)
        if said and int(said["errno"]) in LIMITS and said["strerror"] == os.strerror(int(said["errno"])):
            return _short_of(int(said["errno"]), said["file"])
        if (collective := collective_failure(error)) is not None:
            return collective
    if isinstance(error, ImportError) and (library := _UNMAPPED.search(str(error))):
        return _out_of_memory(f"loading {library[1]}")
    return None


def _out_of_memory(doing: str | None) -> ResourceError:
    return ResourceError("out of memory" + (f" {doing}" if doing else ""), hint=memory_hint())


def _short_of(number: int, filename: object) -> ResourceError:
    """ENOMEM, EMFILE or ENFILE, met on `filename` (None: no file named)."""
    named = f"cannot open {os.fsdecode(filename)}: " if isinstance(filename, (str, bytes, os.PathLike)) else ""
    if number == errno.ENOMEM:
        return _out_of_memory(f"reading {os.fsdecode(filename)}" if named else None)
    if number == errno.EMFILE:
        import resource  # Unix's: EMFILE is its error

        allowed = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return ResourceError(f"{named}too many open files (this process may have {allowed} open at once)",
                             hint="raise the limit with `ulimit -n 4096`, and run it again")
    return ResourceError(f"{named}too many files open on this machine (the system's limit)",
                         hint="close other programs, or raise the system's limit (fs.file-max), and run it again")
