"""Whether a path may become an output, asked before a command's work rather than met as an OS error at its first
write: `check_writable` refuses early, before minutes of sampling, when the output cannot be written, and
`check_output_target` when it is a symbolic-link loop or one of the command's inputs (the input is never changed,
whatever --overwrite says). Writing itself is mmgen.files."""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmgen.errors import ConfigError, MediaError, OutputExists, UsageError, output_named
from mmgen.temporaries import added_bytes

DEFAULT_NAME_MAX = 255  # bytes in one file name, where the filesystem does not say


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise now if `path` cannot become an output: OutputExists (unless `overwrite`), or MediaError when
    its directory is missing, not a directory, or not writable. Returns the path as a Path. A symbolic link
    at `path`, even one to nothing, exists: replacing it needs `overwrite` like any file."""
    target = Path(path)
    folder = target.parent
    check_name_length(target)
    if target.is_dir():
        raise MediaError(f"cannot write {target}: it is a directory")
    if os.path.lexists(target) and not overwrite:
        raise OutputExists(f"{target} already exists")
    existing = nearest_existing(folder)
    if existing.exists() and not existing.is_dir():  # the folder, or one it would be made in
        raise MediaError(f"cannot write {target}: {existing} is {kind_of(existing)}, not a directory")
    check_not_dangling(existing, f"cannot write {target}")
    if not folder.is_dir():
        if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):  # e.g. a read-only mount
            raise MediaError(f"cannot write {target}: directory {folder} cannot be created, {existing} is not writable")
        raise MediaError(f"cannot write {target}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"cannot write {target}: directory {folder} is not writable")
    return target


def check_output_folder(path: str | os.PathLike) -> Path:
    """Raise now (MediaError) if `path` cannot be a folder a command writes into: it, or the nearest part of it
    that exists, is a file (or a device, a pipe…). Returns the path as a Path."""
    folder = Path(path)
    existing = nearest_existing(folder)
    if existing.exists() and not existing.is_dir():
        what = "it" if existing == folder else existing
        raise MediaError(f"cannot write into {folder}: {what} is {kind_of(existing)}, not a folder")
    check_not_dangling(existing, f"cannot write into {folder}")
    return folder


def check_not_dangling(existing: Path, refusal: str) -> None:
    """MediaError (`refusal`: why it is said) when `existing` — the nearest part of an output's folder that is there
    (nearest_existing) — is a symbolic link to nothing: a missing folder is created, but not through a link; the
    link's own target is the user's to make (or a loop of links, which no one can)."""
    if not os.path.islink(existing) or existing.exists():
        return
    try:
        os.stat(existing)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError(f"{refusal}: {existing} is a symbolic link loop") from None
    target = os.readlink(existing)  # a relative one is from the link's folder, not the current one: the hint says
    where = os.path.normpath(os.path.join(os.path.dirname(existing), target))  # the folder to make, as it is
    raise MediaError(f"{refusal}: {existing} is a symbolic link to {target}, a folder that does not exist",
                     hint=f"mmgen creates a missing folder, but not where a link points: create {where}, or write "
                     "elsewhere")


def why_no_files(error: OSError) -> str:
    """Why a folder took no new file, for its line: /proc's "no such file" is that it takes none."""
    return "it takes no new files" if error.errno == errno.ENOENT else str(error.strerror or error)


def check_writable_folder(path: str | os.PathLike, hint: str | None = None) -> Path:
    """As `check_output_folder`, and MediaError too unless a file can be made in `path`, or where it would be
    created: said before a command's work, not as an OS error at its first write. Creates no folder."""
    folder = check_output_folder(path)
    if refused := refusal_to_create(folder):
        where, e = refused
        raise MediaError(f"cannot write into {folder}{where}: {why_no_files(e)}", hint=hint)
    return folder


def refusal_to_create(folder: Path) -> tuple[str, OSError] | None:
    """Why no file can be made in `folder`, or where it would be created (None: one can): where that is, as
    " (it would be created in …)" or "", and the OSError the try met. Creates no folder."""
    existing = nearest_existing(folder)
    try:
        try_a_file(existing)
    except OSError as e:
        return ("" if existing == folder else f" (it would be created in {existing})"), e
    return None


def try_a_file(folder: Path) -> None:
    """OSError unless a file can be made (and deleted) in `folder`: permission bits do not tell root, a read-only
    mount or /proc apart."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".mmgen-check-"):
        pass


def nearest_existing(path: Path) -> Path:
    """`path` if anything is there (a dangling symlink too), else its nearest ancestor that is: where creating
    it would start."""
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the filesystem of `folder`, or of where it will be created, allows."""
    try:
        return os.pathconf(nearest_existing(folder), "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not a POSIX system, or the filesystem does not say
        return DEFAULT_NAME_MAX


def check_name_length(path: Path, limit: int | None = None) -> None:
    """Raise now (UsageError) if the file name of `path` is longer than its filesystem allows (`limit`: name_max of
    its folder, where already known), or the whole path longer than the system takes — its own, or its temporary's
    (mmgen.files.temporary_name, written first beside it: its stem is shortened to fit, so only a folder too long
    for it with any stem is refused)."""
    from mmgen.weights.names import PATH_MAX

    size, limit = len(os.fsencode(path.name)), name_max(path.parent) if limit is None else limit
    if size > limit:
        raise UsageError(f"cannot write {path}: its name is {size} bytes, longer than the {limit} the "
                         "filesystem allows", hint=f"choose a shorter name with {output_named()}")
    whole = len(os.fsencode(path))
    if whole > PATH_MAX:
        raise UsageError(f"cannot write {path}: path too long ({whole} bytes; the system takes at most {PATH_MAX} "
                         "in a path)", hint=f"choose a shorter path with {output_named()}")
    folder = whole - size  # the folder as `path` spells it, and its /
    if folder + added_bytes() + len(os.fsencode(path.suffix)) > PATH_MAX:
        allowed = PATH_MAX - added_bytes() - len(os.fsencode(path.suffix))
        raise UsageError(f"cannot write {path}: its folder's path is {folder} bytes, too long for the temporary the "
                         f"file is written as first: the system takes at most {PATH_MAX} bytes in a path, which "
                         f"leaves {allowed} for the folder", hint=f"choose a shorter path with {output_named()}")


def check_output_target(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Raise now if `path` can never be an output: a name too long for its filesystem, a folder (or a link to one:
    never replaced, whatever --overwrite says), a symbolic link (or a folder on its way) that loops, a place inside mmgen's own cache folders (weights.cache.part_of_cache), or the
    same file as one of `inputs` — through symlinks, hard links or another spelling of the name."""
    check_name_length(Path(path))
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError(f"cannot write {path}: it (or a folder on its way) is a symbolic link loop") from None
    else:
        if stat.S_ISDIR(mode):  # as check_writable says it: a batch's planning asks only this
            raise MediaError(f"cannot write {path}: it is a directory")
        if kind := _not_a_file(path, mode):
            raise UsageError(f"cannot write {path}: it is {kind}; an output is a regular file, written whole and "
                             "then moved into place", hint=f"choose another output with {output_named()}")
    for source in inputs:
        if same_file(path, source):
            raise UsageError(f"cannot write {path}: it is the input {source}",
                             hint="an output never replaces an input")
    # imported here: the cache module writes through mmgen.files, which asks this one
    from mmgen.weights.cache import part_of_cache

    if (own := part_of_cache(path)) is not None:
        raise UsageError(f"cannot write {path}: it is inside mmgen's cache ({own})",
                         hint="write outputs elsewhere; the cache holds mmgen's own models and records")


class NewNames:
    """Which planned outputs are plainly new names, told per folder rather than per file (`generate -n 100000`
    checked each clip's files one by one: a stat, a symlink resolution, a name-length lookup and a cache check per
    file, ~1.6 ms each). Once one output in a folder has passed every per-file check (`passed`), another name there
    is new where it is not among what one listing of the folder found — compared caselessly, so a case-insensitive
    filesystem's `CLIP.MP4` is no new name — is not one of the `inputs` nor mmgen's cache through the folder's
    resolved path, and fits its filesystem: check_name_length's rules, reduced once per folder to one longest name
    (`_Folder.longest`). Such a name needs none of check_output_target's or check_writable's per-file checks: they
    would find nothing there. Any other name is checked as before, one by one, and refused in the same words.
    Names are handled as strings, folder by folder: 20,000 clips' 80,000 files are told in a fraction of a second."""

    def __init__(self, inputs: Iterable[str | os.PathLike] = ()):
        self._inputs = {os.path.realpath(p) for p in inputs}
        self._passed: set[str] = set()  # folders, as the paths spell them (with their separator: _folder)
        self._folders: dict[str, _Folder | None] = {}  # their facts, taken when first asked for

    def passed(self, paths: Iterable[Path]) -> None:
        """`paths` passed every check of an output: other names in their folders may be told new."""
        self._passed.update(_folder(path) for path in paths)

    def resolved(self, path: Path) -> str | None:
        """`path` with its folder's symbolic links resolved, where it is plainly a new name (its folder's resolved
        once); None where it is to be checked one by one."""
        folder, name = _folder(path), path.name
        if folder not in self._passed or name in ("", ".", ".."):
            return None  # not told: its folder may pass later
        if folder not in self._folders:
            self._folders[folder] = _Folder.of(folder)
        if (facts := self._folders[folder]) is None:
            return None
        size = len(name) if name.isascii() else len(os.fsencode(name))
        real = facts.real + name
        if size > facts.longest or _caseless(name) in facts.names or real in self._inputs:
            return None
        return real


def _folder(path: Path) -> str:
    """The folder of `path` as its spelling has it, with the separator before its name ("" in the current folder):
    one string for every path in it, cut from the path's own text rather than made as a Path."""
    text = str(path)
    return text[: len(text) - len(path.name)]


@dataclass(frozen=True)
class _Folder:
    """What NewNames takes once of a folder that passed: its resolved path (with a separator to add a name to), the
    names in it (caseless), and the longest name (bytes) a file in it may have under check_name_length's rules."""

    real: str
    names: frozenset[str]
    longest: int

    @classmethod
    def of(cls, folder: str) -> _Folder | None:
        """The facts of `folder` (as _folder spells it). None for a folder whose names cannot be listed, or whose
        resolved path holds mmgen's cache: its names are checked one by one."""
        from mmgen.weights.names import PATH_MAX

        where = folder or os.curdir
        real = os.path.realpath(where)
        try:
            names = frozenset(map(_caseless, os.listdir(where))) if os.path.isdir(where) else frozenset()
        except OSError:
            return None
        if _holds_cache(real):
            return None
        # a name's suffix is part of it, so a name that fits beside the folder and a temporary's added bytes meets
        # all three rules (the name, the whole path, the temporary's); a longer one is told by check_name_length
        room = PATH_MAX - len(os.fsencode(folder)) - added_bytes()
        return cls(os.path.join(real, ""), names, min(name_max(Path(where)), room))


def _caseless(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _holds_cache(real: str) -> bool:
    """Whether mmgen's cache folder is in the resolved folder `real` (or `real` in it): a name there may be the cache's."""
    from mmgen.weights.cache import cache_root  # here: as part_of_cache, in check_output_target

    try:
        root = os.path.realpath(cache_root())
    except ConfigError:
        return False
    return os.path.dirname(root) == real or Path(real).is_relative_to(root)


_DESCRIPTOR = re.compile(r"/(proc/(self|thread-self|\d+)|dev)/fd/\d+")  # /dev/stdout's target: /proc/self/fd/1


def _not_a_file(path: str | os.PathLike, mode: int) -> str | None:
    """What an existing `path` (its stat's `mode`) is when it can be no output: a device (/dev/null), a pipe, a
    socket, or the name of a descriptor (/dev/stdout, /dev/fd/1: whatever stdout is, a regular file included);
    None for a file or a folder (a folder is check_writable's to refuse)."""
    link, hops = os.path.abspath(path), 0
    while hops < 40:  # the kernel's own limit on links followed
        if _DESCRIPTOR.fullmatch(link):
            return "the name of an open file descriptor"
        if not os.path.islink(link):
            break
        link, hops = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link))), hops + 1
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file"


def kind_of(path: str | os.PathLike) -> str:
    """What an existing `path` that is no folder is, named as a refusal names it: "a file" for a regular one, else
    what _not_a_file says (a device, a pipe, the name of an open file descriptor…) — /dev/null is no file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # a symbolic link to nothing, or a loop of them
        return "a symbolic link to no file"
    return _not_a_file(path, mode) or "a file"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if `a` and `b` name one file: the same device and inode where both exist (so hard links and
    symlinks count), else the same path once symlinks are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)
