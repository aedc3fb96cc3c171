"""Where a pipeline's files go and how they are written: the mp4, its sidecar JSON, optional previews and
wav. Every name is checked before sampling starts, and every file is written atomically (mmgen.files)."""

from __future__ import annotations

import dataclasses
import functools
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen import files, new_folders, output_folders
from mmgen.config import json_text
from mmgen.disk_failures import write_failure
from mmgen.errors import InvalidSetting, MediaError, StorageError, UsageError, output_named
from mmgen.files import atomic_output, kept_together, retire
from mmgen.json_owners import read_record
from mmgen.media.containers import SUFFIXES, container_for, default_suffix
from mmgen.output_checks import (
    NewNames,
    check_output_target,
    check_writable,
    kind_of,
    nearest_existing,
    same_file,
    try_a_file,
)
from mmgen.temporaries import remove_leftovers

if TYPE_CHECKING:
    from mmgen.pipelines.clips import Result

CLIP_STEM = "clip_{:04d}"
_listeners: ContextVar[tuple[Callable[[Result], None], ...]] = ContextVar("kept_listeners", default=())
MOVIE_SUFFIXES = SUFFIXES  # the containers mmgen.media.containers writes


@dataclass(frozen=True)
class OutputPaths:
    """The files of one output: "mp4" and "json" always, plus "frames_png"/"spectrogram_png" previews and "wav"."""

    files: dict[str, Path]

    @property
    def mp4(self) -> Path:
        return self.files["mp4"]


def beside(mp4: Path, *, previews: bool = False, wav: bool = False) -> OutputPaths:
    """OUT.mp4 with OUT.json, [OUT_frames.png, OUT_spectrogram.png], [OUT.wav] next to it."""
    files = {"mp4": mp4, "json": mp4.with_suffix(".json")}
    if previews:
        files |= {"frames_png": mp4.with_name(f"{mp4.stem}_frames.png"),
                  "spectrogram_png": mp4.with_name(f"{mp4.stem}_spectrogram.png")}
    if wav:
        files["wav"] = mp4.with_suffix(".wav")
    return OutputPaths(files)


def default_output(input: str | Path, command: str) -> Path:
    """INPUT_<command>.mp4 next to the input (soundtrack, animate, retake) — or INPUT_<command>.webm/.mov/.mkv
    when mp4 cannot carry the input's video as is (media.containers.default_suffix). A folder is refused here,
    before its name is taken: `.` and `/` have none."""
    input = Path(input)
    if input.is_dir():
        raise MediaError(f"cannot read {input}: it is a directory")  # as media.probe.open_input says it
    from mmgen.media.probe import probe  # here: PyAV loads only for a command that reads or writes media

    try:
        codec = probe(input).video_codec
    except MediaError:
        codec = None  # the pipeline's own input check reports what is wrong with it
    return input.with_name(f"{input.stem}_{command}{default_suffix(input, codec)}")


def output_for(input: str | Path, output: str | Path | None, command: str) -> Path:
    """Where a command with one input file writes: `output` as given, or inside it under the default name when
    it is a folder (an existing one, or a name ending in a slash), or the default name next to the input."""
    if output is None:
        return default_output(input, command)
    if os.path.isdir(output) or str(output).endswith(("/", os.sep)):  # False, not an error, for a too-long name
        return Path(output) / default_output(input, command).name
    return Path(output)


def check_outputs(
    outputs: list[OutputPaths], overwrite: bool, inputs: Sequence[Path] = (), sample_rate: int | None = None
) -> None:
    """Refuse now — before any model loads — if any output could not be written, exists already, is one of
    the `inputs` (whatever `overwrite` says), or is a container whose sound cannot be stored at the `sample_rate`
    asked for. A missing output folder is fine if it can be created (ensure_folder makes it when writing starts)."""
    new = NewNames(inputs)  # an output in a folder already checked, whose name is not there: no per-file checks
    mp4s: list[str | None] = []  # each output's mp4, resolved, where it is plainly a new name
    containers: set[str] = set()  # the mp4s' suffixes checked
    for paths in outputs:
        told = {key: new.resolved(path) for key, path in paths.files.items()}  # None: checked one by one
        for key, path in paths.files.items():
            if told[key] is None:
                check_output_target(path, inputs)
        if (suffix := paths.mp4.suffix) not in containers:  # what a container is asked is asked of its suffix once
            if suffix.lower() not in MOVIE_SUFFIXES:
                raise UsageError(f"cannot write {paths.mp4}: the output must be a {', '.join(MOVIE_SUFFIXES)} file",
                                 hint=f"e.g. {output_named(paths.mp4.with_suffix('.mp4'))}")
            check_rate_stored(paths.mp4, sample_rate)
            containers.add(suffix)
        if told["json"] is None:  # a sidecar not there is no one's
            check_not_anothers(paths)
        for key, path in paths.files.items():
            if told[key] is None and (path.parent.exists() or not _creatable(path.parent)):
                check_writable(path, overwrite)
        if None in told.values():  # a name told new is in a folder that passed already
            new.passed(paths.files.values())
        mp4s.append(told["mp4"])
    for folder in {nearest_existing(Path(parent)) for parent in {os.path.dirname(paths.mp4) for paths in outputs}}:
        _try_writing(folder)  # the folder itself, or where it will be created
    resolved = [real or str(paths.mp4.resolve()) for real, paths in zip(mp4s, outputs, strict=True)]
    if len(set(resolved)) != len(resolved):
        raise UsageError("two outputs would have the same name")


def check_rate_stored(mp4: Path, sample_rate: int | None) -> None:
    """Refuse a `sample_rate` asked for (None: a rate of the sound's own, fitted to the container) that the sound of
    the container `mp4` names cannot be stored at: the commands' check before any work, and a batch's when planning."""
    into = container_for(mp4)
    if sample_rate is not None and sample_rate not in (rates := into.audio_rates()):
        codec = into.audio_encoder.removeprefix("lib")
        raise InvalidSetting("sample_rate", f"{mp4}'s sound ({codec} in {into.name}) cannot be stored at "
                             f"{sample_rate:,} Hz", sample_rate,
                             hint=f"use {'one of ' * (len(rates) > 1)}{', '.join(map(str, rates))}")


def _try_writing(folder: Path) -> None:
    """Create and delete a file in `folder`: permission bits do not tell root, or anyone on a read-only
    mount, whether a write will succeed."""
    try:
        try_a_file(folder)
    except OSError as e:
        raise MediaError(f"cannot write to {folder}: {e.strerror or e}") from None


def _creatable(folder: Path) -> bool:
    """True if `folder` does not exist but its nearest existing ancestor is a writable directory."""
    ancestor = nearest_existing(folder)
    return not folder.exists() and ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK)


def ensure_folder(paths: OutputPaths) -> None:
    """Make the output's folder (check_outputs found it creatable) and, as the command starts writing there,
    remove the temporaries a killed run left in it (mmgen.temporaries: never those of a run still writing). A file
    where the folder must be came there while the command ran: StorageError (exit 1) naming it, not an OSError."""
    folder = paths.mp4.parent
    output_folders.check_folders(paths.mp4)  # an output folder it is in, replaced since: no folder made in what is there now
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        existing = nearest_existing(folder)
        if existing.exists() and not existing.is_dir():
            raise StorageError(f"cannot write {paths.mp4}: {existing} is {kind_of(existing)} now, not a folder (it was replaced "
                               "while mmgen ran)", hint="move it away and run the command again") from None
        raise write_failure(paths.mp4, e) from None
    output_folders.keep_folder(folder)  # the folder found, before anything in it is removed: not one put in its place since
    remove_leftovers(folder)


def new_folders_removed_on_failure(outputs: list[OutputPaths]) -> AbstractContextManager[None]:
    """The output folders that do not exist yet (ensure_folder creates them as writing starts) are removed again if
    the block fails while they are still empty (new_folders.new_folders_removed_on_failure): a run that wrote nothing
    leaves nothing behind. A folder that existed before, or holds a finished output, stays."""
    return new_folders.new_folders_removed_on_failure(paths.mp4.parent for paths in outputs)


def describe(mp4: Path) -> dict:
    """What a player will find in the written file (probed, not assumed; its frames counted, as not every container
    records how many it holds)."""
    from mmgen.media.probe import frame_count, probe

    info = probe(mp4)
    return {
        "duration_s": round(info.duration, 4),
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "frames": frame_count(mp4) if info.has_video else None,
        "sample_rate": info.sample_rate,
        "video_codec": info.video_codec,
        "audio_codec": info.audio_codec,
    }


@contextmanager
def recording() -> Iterator[list[Path]]:
    """Collect the mp4 of every output kept inside the block (so an interrupted command can say what it kept)."""
    finished: list[Path] = []
    with on_kept(lambda result: finished.append(result.files["mp4"])):
        yield finished


@contextmanager
def on_kept(listener: Callable[[Result], None]) -> Iterator[None]:
    """Call `listener` with each output's result as it is kept inside the block — once all its files are in place
    for good (`writing` ended), not when the command ends: a command's --json streams its lines, so a run stopped
    or failing later has still listed every output it keeps, and only those."""
    token = _listeners.set((*_listeners.get(), listener))
    try:
        yield
    finally:
        _listeners.reset(token)


@contextmanager
def writing(paths: OutputPaths, overwrite: bool, inputs: Sequence[Path] = ()) -> Iterator[None]:
    """The block that writes one output's files (ending with `finish`): all of them appear, or none do
    (files.kept_together), in its folder (ensure_folder).

    A sidecar means a complete output, so it is the last file to appear — and, with `overwrite`, the old one is
    the first to go (kept aside until the block ends, and back if the block fails), then the old files this run
    does not write again (stale_companions). A kill -9, which no undo survives, so leaves the old output whole,
    or files without a sidecar — never a new mp4 beside an old sidecar that describes another clip, nor an old
    sidecar naming previews that are gone. The next command there removes what the killed one kept aside
    (mmgen.temporaries); a batch redoes the job; the mp4 left is refused as "exists" without --overwrite.
    A companion that is one of the run's `inputs` (the old run's OUT.wav animated into OUT.mp4) stays: an input is
    never an output's file to remove."""
    with kept_together():
        ensure_folder(paths)
        if overwrite:
            check_not_anothers(paths)  # again: a json written there since check_outputs (a finetune run ending) stays
            stale = stale_companions(paths, inputs)
            for path in [paths.files["json"], *stale]:
                retire(path)
        try:
            yield
        except Exception:  # a file it wrote, or read back, was not there: its folder was removed or replaced under it,
            output_folders.check_folders(paths.mp4)  # which is the failure to say (FolderReplaced), not the OSError
            raise


def finish(result: Result, paths: OutputPaths, overwrite: bool) -> Result:
    """Record the written files in the result and write its sidecar JSON (last, so a sidecar means a
    complete output), inside `writing`."""
    if not paths.mp4.is_file():
        raise MediaError(f"cannot write {paths.mp4}: nothing was written")
    result = dataclasses.replace(result, files=dict(paths.files), media=describe(paths.mp4))
    with atomic_output(paths.files["json"], overwrite) as temp:
        temp.write_text(json_text(result.to_json(), indent=2) + "\n", encoding="utf-8")
    for listener in _listeners.get():  # once all of it is kept (`writing` ends); each one even if another is stopped
        files.when_kept(functools.partial(listener, result))
    return result


def check_not_anothers(paths: OutputPaths) -> None:
    """Refuse (UsageError, whatever --overwrite says) an output whose sidecar name holds another's record: the json
    of a model (mmgen.json_owners: RUN/model.json, which `-o RUN/model.mp4` would replace), or the sidecar of another
    output that is still there: OUT.mkv and OUT.mp4 share the names `beside` gives (OUT.json, the previews,
    OUT.wav), so writing one would replace the other's sidecar and companions with ones that describe another clip.
    A sidecar whose movie is gone, or is this output's own (the output being replaced), is no one else's."""
    sidecar = paths.files["json"]
    record = read_record(sidecar)
    if record is not None and record.kind == "model":
        raise UsageError(f"cannot write {paths.mp4}: {sidecar} is {record}, and {paths.mp4.name}'s sidecar would take its "
                         "place", hint=f"choose another name with {output_named()}")
    owner = record.owner if record is not None else None
    if owner is not None and owner.name != paths.mp4.name and os.path.lexists(owner):
        raise UsageError(f"cannot write {paths.mp4}: {sidecar} is the sidecar of {owner}, and "
                         f"{paths.mp4.name}'s would take its place (one name in two containers shares its sidecar, "
                         "previews and wav)", hint=f"choose another name with {output_named()}, or move {owner.name} and its files "
                         "away")


def _old_sidecar(sidecar: Path) -> tuple[dict, Path | None]:
    """What the sidecar at `sidecar` holds, and the movie it describes (beside it, by the name it records); ({}, None)
    where there is none, or not a clip's sidecar mmgen writes."""
    record = read_record(sidecar)
    return (record.fields, record.owner) if record is not None and record.kind == "clip" else ({}, None)


def stale_companions(paths: OutputPaths, inputs: Sequence[Path] = ()) -> list[Path]:
    """The files that the run whose output `paths` replaces wrote beside it and this run does not write again
    (previews after --no-previews, a wav without --wav): they showed a clip that is gone. Only what that run's
    sidecar records under this mp4's name, at the names `beside` gives, as regular files not changed since that
    sidecar was written — never a file mmgen did not write, nor one of the run's `inputs`."""
    sidecar = paths.files["json"]
    old, owner = _old_sidecar(sidecar)
    try:
        written = sidecar.stat().st_mtime_ns
    except OSError:
        return []
    if owner is None or owner.name != paths.mp4.name:
        return []
    stale = []
    for key, path in beside(paths.mp4, previews=True, wav=True).files.items():
        recorded = old.get(key)
        if key in paths.files or not isinstance(recorded, str) or Path(recorded).name != path.name:
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mtime_ns <= written and not any(same_file(path, source)
                                                                                  for source in inputs):
            stale.append(path)
    return stale
