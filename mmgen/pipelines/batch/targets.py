"""Where a batch's jobs write, checked before any work: a job's `name:` is a file inside the output folder; no
output goes over the batch file, its manifest or any file a job reads (an output never replaces an input), no two
jobs into one file, and none over a file this batch file did not write, or that changed since it did, unless
--overwrite; and where each job stands in the manifest."""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from stat import S_ISDIR
from typing import TYPE_CHECKING

from mmgen.errors import UsageError, in_callers_words, outputs_named_with
from mmgen.media.containers import MEDIA_SUFFIXES
from mmgen.output_checks import check_output_folder, check_output_target, name_max, same_file
from mmgen.pipelines.batch.manifest import ByPath, Manifest, Record
from mmgen.pipelines.batch.name_bytes import utf8_name
from mmgen.pipelines.batch.schema import JobSpec, Problem
from mmgen.pipelines.preflight import input_files
from mmgen.spelled_paths import unicode_form
from mmgen.written_paths import WINDOWS_HINT, is_windows_path, made_name_refusal

if TYPE_CHECKING:
    from mmgen.pipelines.batch.jobs import Job, Status
    from mmgen.pipelines.batch.written import Written

_JOBS_LISTED = 3  # jobs named in a collision's line; more are counted
JOB_NAMES = "the job's `name:`"  # what names a batch job's output, as a hint that says to name another says it


def check_manifest(batch_file: Path, manifest: Manifest) -> None:
    """The batch appends to the output folder's manifest (under its lock file): an output as the jobs' files are
    (never inside mmgen's cache, even in a dry run that writes nothing), and neither may be the batch file."""
    with outputs_named_with(output_folder_named()):
        check_output_target(manifest.path)
    for path in (manifest.path, manifest.lock):
        if same_file(batch_file, path):
            raise UsageError(f"cannot use {batch_file} as the batch file: it is {path.name}, which the batch "
                             f"writes in {manifest.folder}",
                             hint=f"move the batch file, or choose another output folder with {output_folder_named()}")


def output_folder_named() -> str:
    """What names a batch's output folder, in its caller's words, for a hint that says to choose another: the file's
    `output_dir:`, or the command's -o (plan_batch's output_dir)."""
    return f"the file's `output_dir:` or {in_callers_words('-o', 'output_dir=')}"


class Places:
    """What planning asks the filesystem about each output file — whether something is there, its real path, how
    long its name may be — answered from one listing per folder: a batch of 100,000 clips writes 400,000 files
    into a few folders, and a few system calls per file were most of its planning time. A file that is there, in
    a folder that is not plainly one, or with a name too long, is checked one by one as before."""

    def __init__(self):
        self._folders: dict[str, _Folder] = {}
        self._seen: dict[str, str | None] = {}  # by output path: its real path if plain, else None

    def absent(self, path: Path) -> str | None:
        """The real path of `path` if nothing is there (not even a dangling symlink), in a folder that resolves
        without error, under a name its filesystem takes — so no more is to be checked one by one; else None."""
        text = str(path)
        if text not in self._seen:
            parent, name = os.path.split(text)
            if parent not in self._folders:
                self._folders[parent] = _Folder(Path(parent))
            folder = self._folders[parent]
            plain = folder.listed and not folder.holds(name) and len(os.fsencode(name)) <= folder.name_max
            self._seen[text] = os.path.join(folder.real, name) if plain else None
        return self._seen[text]

    def exists(self, path: Path) -> bool:
        """os.path.lexists(path), from the listing where the file is plainly not there."""
        return self.absent(path) is None and os.path.lexists(path)

    def real(self, path: Path) -> str:
        """os.path.realpath(path), without a system call where the file is plainly not there."""
        return self.absent(path) or os.path.realpath(path)


class _Folder:
    def __init__(self, path: Path):
        self.real = os.path.realpath(path)
        self.name_max = name_max(path)
        self.names: set[str] = set()  # as _loose: a case-insensitive filesystem's "Clip.mp4" is "clip.mp4" too
        try:
            self.listed = S_ISDIR(os.stat(path).st_mode)
            if self.listed:
                self.names = set(map(_loose, os.listdir(path)))
        except OSError as e:  # a folder still to be made holds nothing; a symlink loop on the way, a file where
            self.listed = e.errno == errno.ENOENT  # the folder would be, an unreadable folder: file by file

    def holds(self, name: str) -> bool:
        """Whether something may be at `name` (a near-match counts: the file-by-file check decides)."""
        return _loose(name) in self.names


def _loose(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def output_name(spec: JobSpec, output_dir: Path, problems: list[Problem]) -> str | None:
    """The job's output name without ".mp4" (any case: `x.MP4` is x, as `generate -o x.MP4` is a file's name, like
    x.mp4), or None; names must be file names inside the output folder."""
    if spec.name is None:
        return None
    name = spec.name[:-len(".mp4")] if spec.name.lower().endswith(".mp4") else spec.name
    line, where = spec.line_of("name"), f"job {spec.index} ({spec.kind}): name: {spec.name!r}"
    file_name = re.split(r"[/\\]", name)[-1]
    if why := name_refusal(name) or made_name_refusal(name, output_dir):  # as written: read as output_dir: is
        problems.append(Problem(line, f"{where}{why}"))
    elif name == spec.name and (suffix := PurePosixPath(file_name).suffix).lower() in MEDIA_SUFFIXES:
        # x.mkv would be x.mkv.mp4 (its last suffix is not .mp4); x.mkv.mp4 ends in .mp4 and is taken as written
        problems.append(Problem(line, f"{where} ends in {suffix}, but a batch writes every output as an mp4 "
                                      f"(leave the suffix out: name: {name.removesuffix(suffix)}; or name: "
                                      f"{name}.mp4, the output older versions wrote for it, to keep theirs)"))
    elif spec.inputs is not None and "{stem}" not in name:
        problems.append(Problem(line, f"{where} must contain {{stem}} (the input's name), since `inputs:` is a glob"))
    else:
        try:
            target = (output_dir / f"{name}.mp4").resolve()
            inside = target.is_relative_to(output_dir.resolve())
        except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
            problems.append(Problem(line, f"{where} leads into a symlink loop"))
            return None
        if not inside:
            problems.append(Problem(line, f"{where} leads outside the output folder"))
        else:
            return name
    return None


def name_refusal(name: str) -> str | None:
    """Why the output name `name` (without ".mp4") is refused, as words to follow it (` must …`, `: …`), or None. One
    rule for a `name:` as written and for one an input's name made (`{stem}`, the default `{stem}_soundtrack`): an
    input named `x\\y.mp4` or with a newline in its name gave such outputs without a word, which `name:` refuses."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    *folders, file_name = re.split(r"[/\\]", name)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return " must not hold control characters (a newline, tab, NUL, ...)"
    if "\\" in name:  # a folder separator on Windows only: named as meant, or not at all (as output_dir:)
        return f": {WINDOWS_HINT}"
    if name.endswith(("/", "\\")):
        return f" names a folder; end it with a file name (e.g. {name}take)"
    if not file_name.strip() or file_name.startswith(".") or any(
            f.startswith(".") and f not in (".", "..") for f in folders):
        return " must name a visible file: not blank, no part starting with '.'"
    if PurePosixPath(name).is_absolute():
        return " must be relative to the output folder, not an absolute path"
    if is_windows_path(name):  # `a:b`; `12:30 take` is a name (a file Windows cannot store: windows_note)
        return f" reads as drive {name[0].upper()}: on Windows (a name is relative to the output folder)"
    if ".." in parts:
        return " must stay inside the output folder (no '..')"
    return None


# Windows' device names, as Python 3.13's ntpath.isreserved lists them (mmgen runs on older Pythons): COM¹ too
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                    *(f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3")}
_NOT_ON_WINDOWS = '<>:"|?*'  # characters no Windows file name holds (and `\\`, refused in a name)


def windows_note(name: str) -> str | None:
    """Why a Windows disk cannot hold the files of the output name `name` (output_name's, without ".mp4"), or None:
    a device name (`CON`, `nul.json`: any suffix), a character Windows refuses, a folder ending in `.` or a space
    (Windows drops it). Said as a note, not refused: such a name is fine here, and older batch files used them."""
    *folders, file_name = name.split("/")
    refused = "".join(dict.fromkeys(c for c in name if c in _NOT_ON_WINDOWS))
    if refused:
        return f"{' '.join(map(repr, refused))} {'is' if len(refused) == 1 else 'are'} not allowed in a Windows file name"
    if device := next((part for part in (*folders, file_name) if part.split(".")[0].rstrip(" ").upper()
                       in _WINDOWS_DEVICES), None):
        return f"{device.split('.')[0]} is a device name on Windows, whatever its suffix"
    if folder := next((f for f in folders if f.endswith((".", " ")) and f != "."), None):  # `./x` is x
        return f"Windows drops the trailing {'dot' if folder.endswith('.') else 'space'} of the folder {folder!r}"
    return None


def check_targets(jobs: list[Job], batch_file: Path, problems: list[Problem], places: Places) -> list[Job]:
    """The jobs whose files can be outputs: none is a symlink loop or a file any job reads — the batch file,
    a job's input, model or adapter (an output never replaces an input)."""
    read = _ReadFiles(batch_file, files_read(jobs))
    folders: dict[Path, UsageError | None] = {}  # a job's folder (its name's folders), checked once for all its jobs
    fine = []
    with outputs_named_with(JOB_NAMES):  # in a batch, -o is the folder its names are in
        for job in jobs:
            try:
                _check_folder(job.files.mp4.parent, folders)
                for path in job.files.files.values():
                    if (real := places.absent(path)) is not None:  # nothing there: only its real path can be an input's
                        read.check_absent(real)
                    else:
                        check_output_target(path)
                        read.check(path)
            except UsageError as e:
                problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {e}"))
            else:
                fine.append(job)
    return fine


def _check_folder(folder: Path, checked: dict[Path, UsageError | None]) -> None:
    """Raise (MediaError) if `folder`, or a folder it would be made in, is a file: a `name: a/b` where `a` is a
    file in the output folder is refused while planning, not failed as FileExistsError when its job runs."""
    if folder not in checked:
        try:
            check_output_folder(folder)
            checked[folder] = None
        except UsageError as e:
            checked[folder] = e
    if (refused := checked[folder]) is not None:
        raise refused


def files_read(jobs: Sequence[Job]) -> list[Path]:
    """Every file the jobs read: their inputs, models, upsamplers and adapters (and those files' sidecars)."""
    return [*(job.input for job in jobs if job.input is not None), *_model_files(jobs)]


def _model_files(jobs: Sequence[Job]) -> set[Path]:
    """The model and adapter files of all jobs, looked up once per distinct model and adapters (a lookup reads
    the registry)."""
    seen: dict[tuple, tuple[Path, ...]] = {}
    for job in jobs:
        key = (job.settings.model, job.settings.adapter)
        if key not in seen:
            seen[key] = input_files(job.settings)
    return {path for paths in seen.values() for path in paths}


class _ReadFiles:
    """The files jobs read, for telling whether an output is one of them as mmgen.output_checks.same_file would — the
    same inode where both exist, else the same resolved path — with one lookup per output, not one per input."""

    def __init__(self, batch_file: Path, paths: list[Path]):
        self.by_inode: dict[tuple[int, int], str] = {}  # what each file is, in words
        self.by_path: dict[str, str] = {}  # every one by its resolved path
        self.missing: dict[str, str] = {}  # those that do not exist
        named = [(batch_file, "the batch file"), *((path, f"the input {path}") for path in sorted(set(paths)))]
        for path, what in named:
            real = os.path.realpath(path)
            self.by_path.setdefault(real, what)
            try:
                stat = os.stat(path)
            except OSError:
                self.missing.setdefault(real, what)
            else:
                self.by_inode.setdefault((stat.st_dev, stat.st_ino), what)

    def check(self, output: Path) -> None:
        real = os.path.realpath(output)
        try:
            stat = os.stat(output)
        except OSError:
            source = self.by_path.get(real)
        else:
            source = self.by_inode.get((stat.st_dev, stat.st_ino)) or self.missing.get(real)
        _refuse(output, source)

    def check_absent(self, real: str) -> None:
        """`check` of an output that is not there, by its real path."""
        _refuse(real, self.by_path.get(real))


def _refuse(output: Path | str, source: str | None) -> None:
    if source is not None:
        raise UsageError(f"cannot write {output}: it is {source}", hint="an output never replaces an input")


def check_unique(jobs: list[Job], problems: list[Problem], places: Places) -> None:
    """No two jobs may write the same file (sidecars and previews included), nor two files whose names differ only
    in case or Unicode form: a macOS or Windows disk holds them as one. One problem per file, naming its jobs (10,000
    jobs named `same` are one line, not 9,999), on the line of the first job that collides."""
    writers: dict[str, list[tuple[Job, Path]]] = {}
    for job in jobs:
        for path in job.files.files.values():
            writers.setdefault(_loose(places.real(path)), []).append((job, path))
    told: set[int] = set()  # jobs already named: a job's sidecar collides wherever its mp4 does
    for group in writers.values():
        if len(group) > 1 and not {job.number for job, _ in group} <= told:
            told |= {job.number for job, _ in group}
            problems.append(Problem(group[1][0].spec.line, _collision(group)))
    _check_folders_are_not_files(jobs, writers, problems, places)


def _check_folders_are_not_files(jobs: list[Job], writers: dict[str, list[tuple[Job, Path]]],
                                 problems: list[Problem], places: Places) -> None:
    """No job's name may put a folder where another job writes a file (`name: x.json/y` beside a job `x`): one
    of the two would fail when it ran. One problem per folder, on the line of the job that needs it."""
    seen: set[str] = set()  # each folder a job writes into, and those above it
    for job in jobs:
        folder = os.path.dirname(places.real(job.files.mp4))
        while folder not in seen and os.path.dirname(folder) != folder:
            seen.add(folder)
            if _loose(folder) in writers:
                (writer, path), *_ = writers[_loose(folder)]
                problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): name: {job.spec.name!r} "
                                        f"needs a folder {path} where job {writer.spec.index} (line "
                                        f"{writer.spec.line}) writes a file; give one of them another `name`"))
            folder = os.path.dirname(folder)


def _collision(group: list[tuple[Job, Path]]) -> str:
    names = list(dict.fromkeys(path.name for _, path in group))
    specs = list(dict.fromkeys((job.spec.index, job.spec.line) for job, _ in group))  # a glob's jobs share one
    listed = ", ".join(f"{index} (line {line})" for index, line in specs[:_JOBS_LISTED])
    more = f" … and {len(specs) - _JOBS_LISTED:,} more" if len(specs) > _JOBS_LISTED else ""
    by = f"jobs {listed}{more}" if len(specs) > 1 else f"job {listed}, for more than one of its inputs"
    what = (f"{names[0]} is" if len(names) == 1 else
            f"{' and '.join(names)} differ only in case or Unicode form (one file on a macOS or Windows disk),")
    return f"{what} written by {by}; give each a different `name`"


def status_of(job: Job, record: Record | None, written: Written, problems: list[Problem], overwrite: bool
              ) -> Status:
    """Where the job stands in the manifest; a file in its way that the batch did not write, or that changed since
    it did, is a problem unless `overwrite`."""
    spelled = written.spelled(job)
    status = _status(job, record, written.manifest, spelled)
    if status != "done" and spelled:  # replaced or not, its file would be a second one beside it: never
        path, there = next(iter(spelled.values()))
        at = next((at for at, (ours, theirs) in enumerate(zip(path.parts, there.parts, strict=False)) if ours != theirs),
                  len(path.parts) - 1)
        named, there = path.parts[at], Path(*there.parts[:at + 1])  # the file, or the folder on its way, so spelled
        what, then = ("file", "to keep it as the job's") if at == len(path.parts) - 1 else \
            ("folder", "for the job to write into it")
        problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {there} is there: {named!r} "
                                f"in another Unicode form ({unicode_form(there.name)}), one {what} with it on a macOS or "
                                f"Windows disk, which this job would write beside it; rename it to the job's "
                                f"spelling ({unicode_form(named)}) {then}, or remove it"))
    elif status != "done" and not overwrite and (why := written.in_the_way(job, record)):
        problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {why}"))
    return status


def _status(job: Job, record: Record | None, manifest: Manifest, spelled: dict[str, tuple[Path, Path]]) -> Status:
    if record is None:
        return "new"
    if record.state == "done":
        if not job.hashed_as(record.hash, record.seed, respelled=utf8_name(record.output) != utf8_name(job.output)):
            return "changed"
        at = ByPath({key: key for key in map(manifest.relative, job.files.files.values())})  # as the job spells it
        for key, (_, there) in spelled.items():
            at[key] = manifest.relative(there)
        return "done" if manifest.intact(record, at) else "damaged"
    return "incomplete" if record.state == "started" else "failed"
