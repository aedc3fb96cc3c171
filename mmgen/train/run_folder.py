"""What a run folder holds before a run starts in it. Two runs never share one folder, but a run that failed
before its first checkpoint (a crash at step 1, a divergence, a kill during the first save) is no dead end:
what it left is only its own config.yaml and log.jsonl, which a new start writes again. Checkpoints that --resume
found damaged and set aside (step-N.damaged: evidence, kept) do not stand in a new start's way. Anything else
there — previews, a checkpoint folder with something in it, a file of the user's — is named, never deleted; and
a finished run's final weights (all of its checkpoints damaged since) are never offered for deletion. A run
holds its folder (RunFolderLock) from its first look to its end, so a run still before its first checkpoint is
never taken for a failed one. Its first look also puts back the final weights a run killed outright while replacing
them left aside (put_back_final)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from mmgen.errors import OutputExists, UsageError, in_callers_words, output_named
from mmgen.json_owners import read_record
from mmgen.kept_states import put_back_kept
from mmgen.lock_holders import flock_holder, folder_user
from mmgen.locks import held_here, let_go, mark_training
from mmgen.output_folders import keep_folder
from mmgen.runtime.torchrun import launcher
from mmgen.temporaries import remove_leftovers
from mmgen.train.runlog import last_event
from mmgen.train.step_folders import latest_checkpoint, step_folders
from mmgen.weights import sidecar

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded against a second one
    fcntl = None

RUN_HEADER = "# mmgen finetune "  # how every run folder's config.yaml begins
RAN_ON = "ran_on"  # config.yaml's record of the device and precision the run last started in: a comment line
REWRITTEN = ("config.yaml", "log.jsonl")  # what a new start writes again
_PARTIAL = re.compile(r"\.step-.*\.partial")  # a checkpoint being written (train.checkpoint.save_checkpoint)
_SET_ASIDE = re.compile(r"step-\d+\.damaged(-\d+)?")  # a damaged checkpoint kept aside (train.checkpoint.set_aside)
FINAL_WEIGHTS = ("model.safetensors", "adapter.safetensors")  # a finished run's (final_weights), + .json


def final_weights(lora: bool) -> str:
    """What a finished run is: RUN/model.safetensors, or RUN/adapter.safetensors for a LoRA run."""
    return FINAL_WEIGHTS[1] if lora else FINAL_WEIGHTS[0]


def check_final_json(run_dir: Path, final_name: str) -> None:
    """UsageError where the name of the json the run writes beside its final weights `final_name` holds a clip's
    sidecar (mmgen.json_owners: `-o RUN/model.mp4` wrote RUN/model.json): the run replaces its own json, never that.
    Asked as the run starts and again as it writes its final weights (a clip may have been written there meanwhile)."""
    json_file = sidecar.json_of(run_dir / final_name)
    record = read_record(json_file)
    if record is not None and record.kind == "clip":
        raise UsageError(f"cannot write {json_file}: it is {record}, and the run's json for {final_name} would take its "
                         "place", hint=f"move {record.owner.name} and {json_file.name} out of {run_dir}, then run the "
                         "command again")


def put_back_final(run_dir: Path) -> None:
    """Put back the final weights and their json that a run killed outright (kill -9) while replacing them — a
    resumed run reaching its end again — took away (kept_states.put_back_kept): the folder holds the old pair or the new
    one, never new weights without their json. Then what else the killed run left half written goes. For the run
    holding the folder (RunFolderLock)."""
    for name in FINAL_WEIGHTS:
        weights = run_dir / name
        with suppress(OSError):
            put_back_kept(sidecar.json_of(weights), weights, sidecar.describes)
    remove_leftovers(run_dir)


def finished_at(run_dir: Path, steps: int, final_name: str) -> int | None:
    """The step a finished run ended at when training it to `steps` leaves nothing to do: its newest checkpoint is
    at or past `steps` and whole (checkpoint.unreadable), and its log's last `done` is that step's, with the final
    weights `final_name` and their json still in the folder. None otherwise: a run with steps left trains on, one
    stopped while writing its final weights writes them again, and a damaged newest checkpoint is resumed past as
    any resume does (set aside, said, and the run goes on from an older one, or refused where none loads)."""
    newest = latest_checkpoint(run_dir / "checkpoints")
    if newest is None or newest.step < steps:
        return None
    # imported here, only for a checkpoint to judge: it imports torch, and a refusal of a folder with none
    # (nothing to resume) comes before torch loads
    from mmgen.train.checkpoint import unreadable

    if unreadable(newest):
        return None
    weights = run_dir / final_name
    if not (weights.is_file() and sidecar.json_of(weights).is_file()):
        return None
    done = last_event(run_dir / "log.jsonl", "done")
    return newest.step if done is not None and done.get("step") == newest.step else None


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds an mmgen finetune run (its config.yaml begins with RUN_HEADER)."""
    return is_run_record(folder / "config.yaml")


def is_run_record(path: Path) -> bool:
    """Whether `path` is a run's own config.yaml, as a finetune run wrote it (it begins with RUN_HEADER). Only a
    regular file is opened: a named pipe given as --config would wait in open() for a writer."""
    if not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline(len(RUN_HEADER)) == RUN_HEADER
    except OSError:  # none, or not a readable file
        return False


@dataclass(frozen=True)
class FailedStart:
    """A run folder whose run has no checkpoint to resume: it stopped before its first one, or every one was found
    damaged and set aside. `others`: what else is in it (full paths, folders ending in /, quoted for a shell); a new
    start replaces config.yaml and log.jsonl only when there is nothing else. `finished`: the final weights of a
    run that reached its end (`others` too), which no hint asks to delete. `set_aside`: its damaged checkpoints."""

    run_dir: Path
    others: tuple[str, ...]
    finished: tuple[str, ...] = ()
    set_aside: tuple[str, ...] = ()

    def hint(self, data_dir: Path, resume: bool) -> str:
        """What the user can do: start the run again (with --resume: with its own settings, which a start
        without --resume reads only through --config), naming what to delete first, if anything — or, where the
        folder holds a finished run's model, in another folder."""
        again, elsewhere = "start it again here", f"start it again, choose another {output_named()}"
        if resume:
            data, run, config = (shlex.quote(str(p)) for p in (data_dir, self.run_dir, self.run_dir / "config.yaml"))
            command = f"{launcher()} finetune"  # under torchrun: the torchrun command, as every resume hint says
            again = f"start it again with its own settings: {command} {data} -o {run} --config {config}"
            elsewhere = f"start it again with its own settings in another folder: {command} {data} -o NEW_FOLDER --config {config}"
        if self.finished:
            return f"it holds the model of a finished run ({' '.join(self.finished)}); to {elsewhere}"
        if self.others:
            return f"to {again}, first delete {' '.join(self.others)}; or choose another {output_named()}"
        return f"{again}; its config.yaml and log.jsonl are replaced"


def failed_start(run_dir: Path, has_checkpoint: bool) -> FailedStart | None:
    """The run folder as a failed start, or None when it is none (no mmgen run in it, or a checkpoint to
    resume from: `has_checkpoint`). An empty folder, and a checkpoints/ holding only the half-written
    `.step-*.partial` of a killed first save (the next save removes it) or checkpoints set aside as damaged,
    count as nothing."""
    if has_checkpoint or not is_run_folder(run_dir):
        return None
    others, finished = [], []
    for entry in sorted(run_dir.iterdir()):
        if entry.name in REWRITTEN and entry.is_file():
            continue
        if entry.is_dir() and not entry.is_symlink() and _holds_nothing(entry):
            continue
        named = shlex.quote(f"{entry}/" if entry.is_dir() else str(entry))
        others.append(named)
        if entry.with_suffix(".safetensors").name in FINAL_WEIGHTS and entry.is_file():
            finished.append(named)
    checkpoints = run_dir / "checkpoints"
    set_aside = sorted(e.name for e in checkpoints.iterdir() if _SET_ASIDE.fullmatch(e.name)) if checkpoints.is_dir() else []
    return FailedStart(run_dir, tuple(others), tuple(finished), tuple(set_aside))


def check_start(run_dir: Path, data_dir: Path, resume: bool) -> FailedStart | None:
    """Whether a run may start in `run_dir` (with `resume`: go on from its checkpoints), told from what the folder
    holds, reading no checkpoint: UsageError for --resume where there is no step folder to resume from; OutputExists
    for a new run in a folder holding anything but what a failed start left, which is returned (a new start
    replaces it; None: nothing to replace, or `resume`). Which of the step folders loads is for --resume to find."""
    has_checkpoint = latest_checkpoint(run_dir / "checkpoints") is not None
    failed = failed_start(run_dir, has_checkpoint) if run_dir.is_dir() else None
    if resume:
        # A step folder appears only whole (save_checkpoint): one with a file missing was damaged after the run saved
        # it, so a run that has one did not stop before its first checkpoint.
        if step_folders(run_dir / "checkpoints"):
            return None
        if failed is None:
            raise nothing_to_resume(run_dir)
        why = ": the run stopped before its first one" if not (failed.others or failed.set_aside) else ""
        raise UsageError(f"{run_dir}: no complete checkpoint to resume from{why}", failed.hint(data_dir, resume=True))
    if failed is not None and failed.others:
        raise OutputExists(f"{run_dir}: the run folder is not empty, and its run has no complete checkpoint",
                           failed.hint(data_dir, resume=False))
    if failed is None and run_dir.exists() and any(run_dir.iterdir()):
        resume_words = in_callers_words("--resume", "resume=True")
        hint = f"add {resume_words} to continue it" if has_checkpoint else f"choose another {output_named()} or empty it"
        raise OutputExists(f"{run_dir}: the run folder is not empty", hint)
    return failed


def nothing_to_resume(run_dir: Path) -> UsageError:
    """--resume in a folder with no step folder at all (and no run that stopped before its first one)."""
    return UsageError(
        f"{run_dir}: no complete checkpoint to resume from",
        f"start a new run without {in_callers_words('--resume', 'resume=True')}, or point {output_named()} at the run folder",
    )


def clear_failed_start(folder: Path) -> None:
    """Remove what a run that failed before its first checkpoint left in `folder` — its config.yaml and log.jsonl,
    its empty folders, a killed first save's `.step-*.partial` — when that is all there is (a failed start with
    nothing else in it: no previews, no checkpoint set aside, no file of the user's); otherwise nothing. For a run
    folder the failed command made itself (trainer.run_training): a new start writes those files again anyway."""
    failed = failed_start(folder, has_checkpoint=False)
    if failed is None or failed.others or failed.set_aside:
        return
    for entry in folder.iterdir():
        if entry.name in REWRITTEN and entry.is_file() and not entry.is_symlink():
            entry.unlink()
        elif entry.is_dir() and not entry.is_symlink():
            for partial in entry.iterdir():
                if _PARTIAL.fullmatch(partial.name) and partial.is_dir() and not partial.is_symlink():
                    shutil.rmtree(partial)
            entry.rmdir()


def _holds_nothing(folder: Path) -> bool:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    if folder.name == "checkpoints":
        return all(entry.is_dir() and (_PARTIAL.fullmatch(entry.name) or _SET_ASIDE.fullmatch(entry.name))
                   for entry in entries)
    return not entries


def _shared_holds_only(fd: int) -> bool:
    """Whether the folder's holders hold it shared only (a lock taken in it: a batch writing into it), not as a
    training run does (exclusively): the kernel says so for holders anywhere, /proc/locks only for those it shows."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


class RunFolderLock:
    """The OS lock (flock) a training run holds on its run folder itself: no file is added to the folder, and
    the kernel lets go however the run ends (an error, Ctrl-C, kill -9). Taken as soon as the folder exists."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._fd: int | None = None

    def take(self) -> None:
        """Hold the folder (no-op when held, or while it does not exist yet); UsageError if a run holds it."""
        if self._fd is not None or not self.run_dir.is_dir():
            return
        keep_folder(self.run_dir)  # the folder every file of the run goes into (output_folders.same_folders)
        if fcntl is None:
            return
        fd = held_here(os.open(self.run_dir, os.O_RDONLY))  # not its DataLoader workers': they outlive a kill -9
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._in_use(fd) from None
        except OSError:  # a filesystem without locks (some network ones): the run goes on unguarded
            let_go(fd)
            return
        mark_training(fd)  # locks taken in it then know no older mmgen's rename holds it (locks._folder_shared)
        self._fd = fd

    def _in_use(self, fd: int) -> UsageError:
        """The "in use" line for the folder `fd`, found held, naming its holder (Linux; elsewhere unnamed): a
        training run, or one holding a lock in it (a batch writing into it), whose shared hold of the folder
        (mmgen.locks) keeps a run out as well: a run's log and checkpoints are not to mix with its outputs."""
        user = folder_user(self.run_dir, fd)
        found = flock_holder(fd) if user is None else None
        writer_only = _shared_holds_only(fd)
        let_go(fd)
        hint = f"wait for it to end, or choose another {output_named()}"
        if user is not None:
            return UsageError(f"{self.run_dir} is in use: {user.command} ({user.where}) is writing into it", hint=hint)
        if writer_only:  # a lock in it, held where /proc/locks cannot show it (another container or host)
            return UsageError(f"{self.run_dir} is in use: another mmgen (in another container or host) is writing "
                              "into it", hint=hint)
        by = f"another mmgen finetune ({found.where})" if found else "another mmgen finetune"
        return UsageError(f"{self.run_dir} is in use: {by} is training in it", hint=hint)

    def check_free(self) -> None:
        """UsageError (the "in use" line) if a run holds the folder now; nothing is kept held."""
        self.take()
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            let_go(self._fd)
            self._fd = None
