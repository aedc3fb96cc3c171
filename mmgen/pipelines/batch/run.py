"""Running a planned batch: this process's share of the jobs, grouped so each model loads once, every job
recorded in the manifest as it starts and ends, a failing job recorded and the rest carried on.

Under torchrun, rank r of N takes the jobs numbered r+1, r+1+N, … of the whole plan — a split that follows
from the batch file alone, so every rank agrees on it without talking, and a re-run gives each job to the
same rank. Each rank then skips its own finished jobs.

One batch at a time writes into an output folder: a second one (another shell, another torchrun job) would
find the first one's jobs half-done and fail them as "exists". run_batch holds the folder's lock (rank 0, for
all its processes) from before it reads what is done until its last job ends.

Each rank plans the batch file on its own, before the ranks join: a file changed while they started (saved again,
a script rewriting it) could give them different plans — two ranks making one output, another output never made.
Having joined, they compare their plans in one collective and run only one they all planned (_one_plan).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import numbers
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmgen.calls import pipeline_call
from mmgen.disk_failures import resource_failure
from mmgen.errors import (
    FolderReplaced,
    InvalidSetting,
    MmgenError,
    UsageError,
    outputs_named_with,
    settings_named_as_keys,
)
from mmgen.lock_holders import Holder
from mmgen.locks import file_lock, sole_holder
from mmgen.media.notes import held_back, remark
from mmgen.output_folders import check_folders
from mmgen.pipelines.animate import animate
from mmgen.pipelines.arguments import check_arguments
from mmgen.pipelines.batch.jobs import Job, Plan
from mmgen.pipelines.batch.manifest import Manifest, Record
from mmgen.pipelines.batch.plan import replanned
from mmgen.pipelines.batch.targets import JOB_NAMES, files_read, output_folder_named
from mmgen.pipelines.clips import Result
from mmgen.pipelines.events import ProgressEvent, ProgressFn, quiet
from mmgen.pipelines.generate import iter_generate, write_generated
from mmgen.pipelines.preflight import input_files
from mmgen.pipelines.retake import retake
from mmgen.pipelines.session import keep_loaded, load
from mmgen.pipelines.soundtrack import soundtrack
from mmgen.runtime import processes

Ending = Literal["done", "skipped", "failed", "not run"]


@dataclass(frozen=True)
class Share:
    """Which jobs this process runs: rank `rank` of `world_size` (torchrun), or all of them."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self):  # Share(2, 2) ran no job, Share(0, 0) was a ZeroDivisionError
        for name in ("world_size", "rank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (name == "world_size"):
                raise InvalidSetting(name, f"must be a whole number of at least {int(name == 'world_size')}, got "
                                     f"{value!r}")
        if self.rank >= self.world_size:
            raise InvalidSetting("rank", f"must be less than world_size ({self.world_size}), got {self.rank}")

    @classmethod
    def here(cls) -> Share:
        """This process's share: its rank's under torchrun (from the environment), else the whole batch."""
        place = processes.described()
        return cls(place.rank, place.world_size)

    @property
    def is_main(self) -> bool:
        """The process that reports the whole batch."""
        return self.rank == 0

    def of(self, jobs: tuple[Job, ...] | list[Job]) -> list[Job]:
        return [job for job in jobs if (job.number - 1) % self.world_size == self.rank]


@dataclass(frozen=True)
class Outcome:
    """How one job ended in this run (plain data, so ranks can gather it)."""

    number: int
    kind: str
    output: str
    ending: Ending
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None  # of an unexpected failure, for --debug
    rank: int = 0
    record: dict | None = None  # a job done in this run: its output's sidecar object (Result.to_json)


@pipeline_call(going_on_from=lambda plan=None, *_, **__: getattr(plan, "notes_said", None))  # checked in the call
def run_plan(
    plan: Plan,
    *,
    share: Share = Share(),
    fail_fast: bool = False,
    overwrite: bool = False,
    progress: ProgressFn = quiet,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Run this share's unfinished jobs, grouped by model; returns one outcome per job of the share, in job
    order. `overwrite` lets a new job replace a file the batch did not write (plan_batch allowed it). A stop (Ctrl-C),
    or the manifest's failure to take a record (its error; the job it was for failed with it), goes on once
    `on_outcome` was told of every job not run, as after --fail-fast's failed job."""
    check_arguments("run_plan", instances={"plan": (plan, Plan), "share": (share, Share)},
                    switches={"fail_fast": fail_fast}, overwrite=overwrite, progress=progress,
                    functions={"on_outcome": on_outcome})
    manifest = Manifest(plan.output_dir)
    batch_file = manifest.batch_named(plan.batch.path)
    mine = share.of(plan.jobs)
    inputs = _inputs_in(plan.output_dir, plan.jobs)
    outcomes: dict[int, Outcome] = {}

    def finish(outcome: Outcome) -> None:  # counted, then said: its line may say the time left after it
        outcomes[outcome.number] = outcome
        progress(ProgressEvent("jobs", len(outcomes), len(mine)))
        on_outcome(outcome)

    for job in mine:
        if plan.status[job.number] == "done":
            _record_anew(manifest, plan.records.get(job.output), job, plan.batch.path)
            outcomes[job.number] = Outcome(job.number, job.kind, job.output, "skipped", rank=share.rank)
    # This run starts past the jobs done before it, in one event: they are no part of its rate (the time left is the
    # jobs it runs, at the pace it runs them), where counted one by one they were a burst of jobs done in no time.
    progress(ProgressEvent("jobs", len(outcomes), len(mine)))
    for outcome in list(outcomes.values()):
        on_outcome(outcome)
    failed = False  # --fail-fast's failed job: the jobs after it are not run
    # A stop, or a manifest that cannot be written (a full disk: no job could be recorded): so are the job it cut
    # short (failed, when it is the manifest) and those after; then it goes on
    stop: KeyboardInterrupt | MmgenError | OSError | None = None
    for group in _by_model([job for job in mine if job.number not in outcomes]):
        if not (failed or stop):
            try:
                with keep_loaded():
                    for job in group:
                        replace = overwrite or plan.status[job.number] != "new"
                        outcome = _run_job(job, manifest, share.rank, batch_file, replace, inputs,
                                           _of_job(progress, f"job {job.number}/{len(plan.jobs)} ({job.kind}) "
                                                   f"{job.output}"), plan.batch.path)
                        finish(outcome)
                        failed = fail_fast and outcome.ending == "failed"
                        if failed:
                            break
            except KeyboardInterrupt as e:
                stop = e
            except Unrecorded as e:
                finish(Outcome(job.number, job.kind, job.output, "failed", error=str(e.error), rank=share.rank))
                stop = e.error
        for job in group:  # each job not run said as one (on_outcome: its line, its --json line), in run order
            if job.number not in outcomes:
                finish(Outcome(job.number, job.kind, job.output, "not run", rank=share.rank))
    if stop is not None:
        raise stop
    return [outcomes[job.number] for job in mine]


@pipeline_call(going_on_from=lambda plan=None, *_, **__: getattr(plan, "notes_said", None))  # checked in the call
def run_batch(
    plan: Plan,
    *,
    fail_fast: bool = False,
    overwrite: bool = False,
    progress: ProgressFn = quiet,
    on_start: Callable[[Plan], None] = lambda plan: None,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Run the plan as one process of the torchrun job the environment describes (or alone): join the job, take
    the output folder (UsageError if another batch is writing into it), read again what is done (`on_start`
    gets the plan as it now stands), run this process's share (run_plan), and return every process's outcomes,
    in job order."""
    check_arguments("run_batch", instances={"plan": (plan, Plan)}, switches={"fail_fast": fail_fast},
                    overwrite=overwrite, progress=progress, functions={"on_start": on_start, "on_outcome": on_outcome})
    joined = processes.start(plan.jobs[0].run.compute.device.type if plan.jobs else "cpu")
    try:
        _one_plan(plan, joined)
        with _only_batch_in(plan.output_dir, joined):
            if joined.is_main:  # before any record of this run: retries of a failing job do not grow it without bound
                with suppress(MmgenError, OSError):  # a full disk: the log as it is still says everything
                    Manifest(plan.output_dir).compact()
            plan = replanned(plan, overwrite)  # a batch that held the folder until now may have done jobs
            on_start(plan)
            if plan.todo():
                for line in plan.remarks:
                    remark(line)
            mine = run_plan(plan, share=Share(joined.rank, joined.world_size), fail_fast=fail_fast,
                            overwrite=overwrite, progress=progress, on_outcome=on_outcome)
            return sorted((o for part in joined.gather(mine) for o in part), key=lambda o: o.number)
    finally:
        processes.stop(joined)


def _one_plan(plan: Plan, joined: processes.Processes) -> None:
    """UsageError on every process, said by rank 0 alone, unless every process planned the same jobs (their outputs
    and content hashes, in order, into one folder): what each read of the batch file was is compared in one
    collective, before any of them takes the folder or runs a job."""
    if not joined.distributed:
        return
    planned = json.dumps([str(plan.output_dir), [(job.number, job.output, job.hash) for job in plan.jobs]])
    if len(set(joined.gather(hashlib.sha256(planned.encode()).hexdigest()))) > 1:
        refused = UsageError(f"{plan.batch.path} changed while the processes started; run again")
        refused.every_process = True
        raise refused


@contextmanager
def _only_batch_in(folder: Path, joined: processes.Processes) -> Iterator[None]:
    """Hold `folder`'s batch lock for the block: rank 0 takes it and tells the others whether it could. Its manifest's
    lock is taken once too, so one that cannot be opened (root's) is said before any job runs, not as a job's failure."""
    with ExitStack() as held:
        problem = None
        if joined.is_main:
            def busy(holder: Holder | None) -> UsageError:
                by = f"another mmgen batch ({holder.where})" if holder else "another mmgen batch"
                return UsageError(f"{folder} is in use: {by} is writing into it",
                                  hint=f"wait for it to end, or choose another output folder with {output_folder_named()}")

            try:
                folder.mkdir(parents=True, exist_ok=True)
                held.enter_context(sole_holder(Manifest(folder).run_lock, busy))
                with file_lock(Manifest(folder).lock):
                    pass
            except OSError as e:
                problem = f"cannot write into {folder}: {e.strerror or e}"
            except UsageError as e:
                problem = str(e)
        joined.refuse_with_main(problem)
        yield


def _by_model(jobs: list[Job]) -> list[list[Job]]:
    """Jobs grouped by the models they load and where, groups in order of first appearance."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.run.model, job.run.upsampler, job.run.compute), []).append(job)
    return list(groups.values())


def _inputs_in(output_dir: Path, jobs: Sequence[Job]) -> tuple[Path, ...]:
    """The files any job of the batch reads (every process's jobs) that are in the output folder: each job's writing
    keeps them, so one job never retires another's input as an old output's stale companion (job 1 remakes
    clip_0000 without --wav while job 2 animates the old clip_0000.wav). Planning kept every output off every input;
    an input elsewhere is no file beside an output, so each job compares its old files with these few."""
    folder = Path(os.path.realpath(output_dir))
    return tuple(path for path in dict.fromkeys(files_read(jobs)) if Path(os.path.realpath(path)).is_relative_to(folder))


class Unrecorded(Exception):
    """A job's manifest record could not be written (`error`: a full disk, a file size limit), or a job's output
    folder was replaced as it ran (FolderReplaced): no later job could be recorded, or written, either, so the batch
    ends there (run_plan)."""

    def __init__(self, error: MmgenError | OSError):
        super().__init__(str(error))
        self.error = error


def _record(manifest: Manifest, record: Record) -> None:
    try:
        manifest.append(record)
    except (MmgenError, OSError) as e:
        raise Unrecorded(e) from e


def _record_anew(manifest: Manifest, record: Record | None, job: Job, batch_file: Path) -> None:
    """Record a done job again as this mmgen names it, where its record is done only as an older one named it (its
    hash: an input by its real path; the batch file by its real path): only the new forms hold where the project is
    renamed, moved or copied whole, so after one run it is. Appended, as every record is; a manifest that cannot take
    it (a full disk) leaves the job done where it is. A record of another batch file sharing the folder stays its own."""
    named = manifest.batch_named(batch_file)
    if record is None or (record.hash == job.hash and record.batch == named) or not manifest.ran_by(record, batch_file):
        return
    with suppress(MmgenError, OSError):
        manifest.append(dataclasses.replace(record, hash=job.hash, seed=job.seed, batch=named))


def _of_job(progress: ProgressFn, job: str) -> ProgressFn:
    """`progress` told of each count as the job `job`'s (ProgressEvent.job): a batch's step lines name their job."""
    return lambda event: progress(dataclasses.replace(event, job=job))


def _run_job(job: Job, manifest: Manifest, rank: int, batch_file: str, replace: bool, inputs: Sequence[Path],
             progress: ProgressFn, batch_path: Path) -> Outcome:
    """Run one job between a "started" and a "done"/"failed" record. Its files are written atomically by the
    pipelines, the sidecar last; a kill in between leaves "started", which the next run redoes. `inputs`: the
    batch's inputs its writing keeps (_inputs_in); `batch_path`: the batch file, as its notes name it."""
    record = Record(job.output, "started", job.hash, job.number, job.kind, job.seed, rank, batch=batch_file)
    _record(manifest, record)
    started = time.perf_counter()
    try:
        check_folders(job.files.mp4)  # not the folder an earlier job wrote into, replaced: nothing made or removed there
        job.files.mp4.parent.mkdir(parents=True, exist_ok=True)  # a name may have folders: "scored/{stem}"
        if replace:
            _remove_leftovers(job)
        # its pipeline's hints and notes name the job's `name:`, not -o or output=, and its settings as the file does
        with outputs_named_with(JOB_NAMES), settings_named_as_keys():
            # its notes (the sound short of its loudness) said as it ends, naming it, as the plan's notes name a job
            with held_back(f"{batch_path}:{job.spec.line}: note: job {job.spec.index} ({job.kind}): {job.output}: "):
                result = RUNNERS[job.kind](job, replace, inputs, progress)
        files = manifest.describe_files(job.files.files)  # a folder replaced since: the job failed, as its line says
    except KeyboardInterrupt:
        raise
    except Exception as raised:  # one bad job must not stop the batch: recorded, reported, the rest go on
        with settings_named_as_keys():  # memory or open files ran out: in mmgen's words, as the CLI says it
            e = resource_failure(raised) or raised
        expected = isinstance(e, MmgenError)
        message = str(e) if expected else f"{e.__class__.__name__}: {e}"
        # the record keeps the error's line; its advice (hint) is for the terminal, not repeated on every retry
        said = e.message if isinstance(e, MmgenError) else message
        _record(manifest, dataclasses.replace(record, state="failed", error=said))
        if isinstance(e, FolderReplaced):  # the next job's files would go there too: the batch ends, as at a full disk
            raise Unrecorded(e) from e
        return Outcome(job.number, job.kind, job.output, "failed", time.perf_counter() - started, message,
                       None if expected else traceback.format_exc(), rank)
    made_by = job.hash_made_by(result.provenance)  # the files loaded, not those planned (the sidecar's)
    _record(manifest, dataclasses.replace(record, state="done", files=files, hash=made_by))
    return Outcome(job.number, job.kind, job.output, "done", time.perf_counter() - started, rank=rank,
                   record=result.to_json())


def _remove_leftovers(job: Job) -> None:
    """Delete the temporaries (mmgen.files.temporary_name) a killed run of this job left: a job belongs to one
    process at a time, so none of them can still be in use."""
    for path in job.files.files.values():
        for leftover in path.parent.glob(f".{glob.escape(path.stem)}.*.partial{path.suffix}"):
            if not leftover.is_dir():  # a folder so named is no temporary of mmgen's: the user's, left alone
                leftover.unlink(missing_ok=True)


def _generate(job: Job, replace: bool, inputs: Sequence[Path], progress: ProgressFn) -> Result:
    (result,) = iter_generate(job.run, load(job.run), 1, progress=progress)
    return write_generated(result, job.files, replace, job.settings.delivery(), (*input_files(job.settings), *inputs))


def _matching(job: Job, replace: bool, inputs: Sequence[Path], progress: ProgressFn) -> Result:
    return MATCHING[job.kind](job.input, job.files.mp4, job.settings, overwrite=replace, progress=progress,
                              inputs=inputs)


MATCHING = {"soundtrack": soundtrack, "animate": animate, "retake": retake}
RUNNERS: dict[str, Callable[[Job, bool, Sequence[Path], ProgressFn], Result]] = {"generate": _generate, **dict.fromkeys(MATCHING, _matching)}
