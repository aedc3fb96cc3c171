"""From a batch file to the jobs it means — one per output file — checked before any work starts.

Planning expands `num:` and `inputs:` globs, merges options (the job's, then `defaults:`, then the command's
own defaults), checks every input, model, output name and setting, and compares each job's content hash with
the manifest to decide what still has to run. All problems are collected and raised together (BatchInvalid).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmgen.calls import pipeline_call
from mmgen.errors import InvalidSetting, MediaError, MmgenError, ModelNotFound, UsageError
from mmgen.media.notes import NAMES_SHOWN, note, remarks_kept, said_in_call
from mmgen.media.remux import check_kept
from mmgen.output_checks import check_output_folder
from mmgen.pipelines.arguments import check_arguments
from mmgen.pipelines.batch.inputs import job_inputs
from mmgen.pipelines.batch.job_hash import JobHasher
from mmgen.pipelines.batch.jobs import Download, Job, Plan, Status
from mmgen.pipelines.batch.manifest import Manifest
from mmgen.pipelines.batch.schema import (
    KIND_OPTIONS,
    BatchFile,
    BatchInvalid,
    JobSpec,
    Problem,
    read_batch_file,
)
from mmgen.pipelines.batch.targets import (
    Places,
    check_manifest,
    check_targets,
    check_unique,
    name_refusal,
    output_name,
    status_of,
    windows_note,
)
from mmgen.pipelines.batch.written import Written
from mmgen.pipelines.outputs import check_rate_stored
from mmgen.pipelines.preflight import check_device
from mmgen.pipelines.session import Run, prepare
from mmgen.pipelines.settings import KINDS, GenerateSettings, RunSettings
from mmgen.runtime import processes, torchrun
from mmgen.runtime.device import select_compute
from mmgen.terminal import counted, listed
from mmgen.weights import ModelCache, availability, fetch_plan, load_registry
from mmgen.weights.architecture import known_config
from mmgen.weights.download import offline
from mmgen.weights.registry import is_path
from mmgen.written_paths import missing_hint

_WINDOWS_NAME = "a name Windows cannot store"  # what the notes on names say of each (media.notes.note's `about`)


@pipeline_call
def plan_batch(
    path: str | Path | BatchFile,
    output_dir: str | Path | None = None,
    *,
    device: str | None = None,
    precision: str | None = None,
    overwrite: bool = False,
    local_rank: int | None = None,
) -> Plan:
    """Read and check the whole batch file; BatchInvalid lists every problem with its line. `device` and
    `precision` (the command's flags) override `defaults:`; `overwrite` lets jobs replace files this batch
    did not write. Under torchrun, this process's GPU (`local_rank`, by default the environment's) is the
    one device auto or cuda means. `path` may be the file read already (read_batch_file, with the `output_dir`
    it was read for): not read again (the command line reads it before torch loads; a batch of 10,000 jobs reads in
    seconds)."""
    read = {} if isinstance(path, BatchFile) else {"path": path}
    check_arguments("plan_batch", paths=read | {"output_dir": output_dir}, optional=("output_dir",),
                    overwrite=overwrite, words={"device": device, "precision": precision}, indices={"local_rank": local_rank})
    if device is not None:  # the command's --device: its problem is its own (InvalidSetting), no problem of the file's
        check_device(device)
    if isinstance(path, BatchFile):
        batch, problems = path, list(path.problems)
    else:
        problems = []
        batch = read_batch_file(path, problems, Path(output_dir) if output_dir is not None else None)
    check_output_folder(batch.output_dir)
    planner = _Planner(batch, problems)
    device = (device or batch.defaults.get("device") or "auto").strip().lower()  # as --device reads it: CUDA is cuda
    if device in ("auto", "cuda") and torch.cuda.is_available():
        device = str(processes.gpu(processes.described().local_rank if local_rank is None else local_rank))
    manifest = Manifest(batch.output_dir)
    check_manifest(batch.path, manifest)
    with remarks_kept() as remarks:
        jobs = planner.jobs(device, precision or batch.defaults.get("precision") or "auto")
    places = Places()
    fine = check_targets(jobs, batch.path, problems, places)
    check_unique(fine, problems, places)
    written = Written(manifest, batch.path, places)
    records = written.latest
    # Only the jobs whose outputs may be written: one that would replace an input gets no "pass --overwrite" hint.
    status = {job.number: status_of(job, records.get(job.output), written, problems, overwrite) for job in fine}
    downloads = planner.downloads(jobs)
    planner.say_notes(fine, status)
    if problems:
        raise BatchInvalid(batch.path, problems)
    return Plan(batch, batch.output_dir, tuple(jobs), status, downloads, records, said_in_call(), tuple(remarks))


def replanned(plan: Plan, overwrite: bool = False) -> Plan:
    """`plan` with the status of each job whose manifest record changed since planning read again (a batch that
    was writing into the folder then may have finished or started it). Run it holding the folder's lock."""
    written = Written(Manifest(plan.output_dir), plan.batch.path)
    records = written.latest
    status = dict(plan.status)
    for job in plan.jobs:
        record = records.get(job.output)
        if record != plan.records.get(job.output):
            in_the_way: list[Problem] = []
            status[job.number] = status_of(job, record, written, in_the_way, overwrite)
            if in_the_way:  # run as new, the job fails as "exists" when it ends
                status[job.number] = "new"
    return dataclasses.replace(plan, status=status, records=records)


class _Planner:
    """Expands and checks the jobs of one batch file, memoising what many jobs share (models, settings)."""

    def __init__(self, batch: BatchFile, problems: list[Problem]):
        self.batch = batch
        self.folder = batch.path.resolve().parent
        self.problems = problems
        self.registry = load_registry()
        self.cache = ModelCache()
        self.hasher = JobHasher(self.registry, self.cache, self.folder, batch.output_dir)
        self._runs: dict[RunSettings, Run | UsageError] = {}
        self._configs: dict[str, Any] = {}
        self._left_out: dict[int, dict[str, Any]] = {}  # by job index: the `defaults:` values its run ignores (_meant)
        self.notes: dict[int, tuple[str, str]] = {}  # by job index: a note on its name (where, what), for say_notes

    def say_notes(self, jobs: list[Job], status: Mapping[int, Status]) -> None:
        """The notes on the jobs' names, for those the run will write (new, changed, redo): a job done and skipped
        writes no file, so a name Windows cannot store is nothing to say there. Where the name is fine but made from
        an input's (`{stem}`, or the default `{stem}_soundtrack`), the outputs a Windows disk cannot store are named,
        one line for all of a job's inputs."""
        if torchrun.rank() != 0:
            return
        to_write: dict[int, list[Job]] = {}
        for job in jobs:
            if status.get(job.number, "done") != "done":
                to_write.setdefault(job.spec.index, []).append(job)
        for index, written in to_write.items():
            spec = written[0].spec
            if index in self.notes:
                note(*self.notes[index], _WINDOWS_NAME)
            elif unstored := [f"{job.output} ({why})" for job in written
                              if job.input is not None and (why := windows_note(job.output.removesuffix(".mp4")))]:
                inputs = "inputs" if spec.inputs is not None else "input"
                note(f"{self.batch.path}:{spec.line_of('name')}", f"note: job {index} ({spec.kind}): "
                     f"{counted(len(unstored), 'output')} named from its {inputs} cannot be stored on a Windows disk: "
                     f"{listed(unstored, NAMES_SHOWN)}", _WINDOWS_NAME)

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(line, message))

    def jobs(self, device: str, precision: str) -> list[Job]:
        try:
            select_compute(device, precision)
        except UsageError as e:
            line = self.batch.default_lines.get("device") or self.batch.default_lines.get("precision")
            self.problem(line, str(e))
            return []
        jobs: list[Job] = []
        for spec in self.batch.jobs:
            settings = self._settings(spec, device, precision)
            run = self._run(spec, settings) if settings is not None else None
            if run is None:
                continue
            targets = self._targets(spec, settings)
            if targets and not self._stored(spec, settings, self.batch.output_dir / f"{targets[0][1]}.mp4"):
                continue
            for input, stem, chosen in targets:
                output = f"{stem}.mp4"
                job_run = _copied(run, seed=chosen.seed)
                job_hash, payloads = self.hasher.hash(spec, input, chosen, job_run, self._left_out.get(spec.index, {}))
                jobs.append(Job(len(jobs) + 1, spec, input, output, chosen, job_run,
                                chosen.outputs(self.batch.output_dir / output), job_hash, payloads))
        return jobs

    def _settings(self, spec: JobSpec, device: str, precision: str) -> RunSettings | None:
        """The job's settings: its own options over the `defaults:` its kind has, over the command's defaults."""
        names = KIND_OPTIONS[spec.kind]
        values = KINDS[spec.kind].layered({k: v for k, v in self.batch.defaults.items() if k in names}, spec.options)
        try:
            settings = KINDS[spec.kind](**values, device=device, precision=precision)
        except ValueError as e:  # each value was checked alone; a rule between two of them can still fail here
            self.problem(spec.line, spec.told(e))
            return None
        refusable = (*settings.gradient_only, *settings.ignorable)
        return self._meant(spec, settings, [k for k in refusable if k not in spec.options])

    def _meant(self, spec: JobSpec, settings: RunSettings, inherited: list[str]) -> RunSettings:
        """`settings` less the `defaults:` values in `inherited` that its run takes no notice of (a guidance scale
        where the run guides by replacement): a default applies to the jobs it means something for and is no error
        for the others; a job's own such value stays, for session.prepare to refuse."""
        defaults = {f.name: f.default for f in dataclasses.fields(settings)}
        given = [k for k in inherited if getattr(settings, k) != defaults[k]]
        if not given:
            return settings
        bare = dataclasses.replace(settings, **{k: defaults[k] for k in given})  # they decide nothing of the guidance
        run = self._prepared(bare)  # the job's run reports what is wrong with it; its guidance then is unknown, so
        guidance = "gradient" if isinstance(run, UsageError) else run.sampling.guidance  # the scale is taken as meant
        unmeant = settings.unmeant(guidance)
        self._left_out[spec.index] = {k: getattr(settings, k) for k in given if k in unmeant}
        return dataclasses.replace(settings, **{k: defaults[k] for k in self._left_out[spec.index]})

    def _stored(self, spec: JobSpec, settings: RunSettings, mp4: Path) -> bool:
        """Whether the job's sound can be stored at the rate it asks for in its outputs (all mp4s: one checks them
        all), as the commands check before any work; a problem naming the job where not."""
        try:
            check_rate_stored(mp4, settings.asked_rate())
        except InvalidSetting as e:
            line = spec.lines.get(e.field) or self.batch.default_lines.get(e.field) or spec.line
            self.problem(line, spec.told(e))
            return False
        return True

    def _targets(self, spec: JobSpec, settings: RunSettings) -> list[tuple[Path | None, str, RunSettings]]:
        """(input, output stem, settings with the seed resolved) of every output the job makes."""
        name = output_name(spec, self.batch.output_dir, self.problems)
        if name is not None and (why := windows_note(name)):  # said for the jobs the run will write (say_notes)
            self.notes[spec.index] = (f"{self.batch.path}:{spec.line_of('name')}", f"note: job {spec.index} "
                                      f"({spec.kind}): name: {spec.name!r} cannot be stored on a Windows disk ({why})")
        if isinstance(settings, GenerateSettings):  # `num` outputs, from seeds seed, seed + 1, ...
            stem = name or f"{spec.kind}_{spec.index}"
            first = settings.seed if settings.seed is not None else _seed_for(stem)
            stems = [stem] if settings.num == 1 else [f"{stem}_{k:04d}" for k in range(settings.num)]
            one = _copied(settings, num=1, seed=first)  # checked once; each clip's seed is within it
            return [(None, s, _copied(one, seed=first + k)) for k, s in enumerate(stems)]
        targets = []
        for input in job_inputs(spec, settings, self.folder, self.batch.output_dir, self.problem, self.config):
            stem = (name or f"{{stem}}_{spec.kind}").replace("{stem}", input.stem)
            if why := name_refusal(stem):  # an input named `x\\y.mp4`, `...mp4` (stem ".."), with a newline in it
                self.problem(spec.line_of("name" if name is not None else "input" if spec.input is not None else
                                          "inputs"), f"job {spec.index} ({spec.kind}): the output name {stem!r} made "
                             f"from the input {input.name!r}{why} (rename the input)")
                continue
            try:  # its kept stream goes into the job's mp4, as the commands check before any work
                check_kept(input, settings.kept, self.batch.output_dir / f"{stem}.mp4")
            except MediaError as e:
                self.problem(spec.line_of("input" if spec.input is not None else "inputs"),
                             f"job {spec.index} ({spec.kind}): {e}")
                continue
            seed = settings.seed if settings.seed is not None else _seed_for(stem)
            targets.append((input, stem, _copied(settings, seed=seed)))
        return targets

    def _run(self, spec: JobSpec, settings: RunSettings) -> Run | None:
        """The checked settings (session.prepare) of a job, seed aside; shared by every job with the same ones."""
        run = self._prepared(settings)
        if isinstance(run, UsageError):
            hint = _missing_file_hint(settings, str(run))
            if isinstance(run, ModelNotFound) and "model" not in spec.lines and "model" in self.batch.default_lines:
                self.problem(self.batch.default_lines["model"], f"defaults: model: {run}{hint}")  # said once
            else:
                field = "model" if isinstance(run, ModelNotFound) else getattr(run, "field", "")
                self.problem(spec.line_of(field), spec.told(run, field) + hint)
            return None
        return run

    def _prepared(self, settings: RunSettings) -> Run | UsageError:
        """session.prepare of the settings, seed aside, or what it refused them for; once for the same ones."""
        key = _copied(settings, seed=None)
        if key not in self._runs:
            try:
                self._runs[key] = prepare(key)
            except UsageError as e:
                self._runs[key] = e
        return self._runs[key]

    def config(self, model: str) -> Any | None:
        """The model's config if known without loading it (weights/architecture.known_config); a model that cannot
        be read is the job's run to report."""
        if model not in self._configs:
            try:
                self._configs[model] = known_config(model)
            except MmgenError:
                self._configs[model] = None
        return self._configs[model]

    def downloads(self, jobs: list[Job]) -> tuple[Download, ...]:
        """Models to fetch before the jobs can run; under MMGEN_OFFLINE=1 each one is a problem."""
        needed: dict[str, Download] = {}
        here: set[str] = set()  # models found on this machine (asked once each, not once per job)
        for job in jobs:
            for name in filter(None, (job.run.model, job.run.upsampler)):
                if name in needed or name in here:
                    continue
                entry = self.registry.entries.get(name)
                if is_path(name) or availability(name, entry, self.cache) != "downloadable":
                    here.add(name)
                    continue
                source = fetch_plan(entry)  # a URL, or a file in a Google Drive folder
                needed[name] = Download(name, source, entry.weights.size)
                if offline() and not source.startswith("file:"):
                    line = job.spec.line_of("model") if "model" in job.spec.lines else job.spec.line
                    self.problem(line, f"model {name} must be downloaded, but MMGEN_OFFLINE=1 forbids it "
                                 f"(import it with `mmgen models import FILE --name {name}`)")
        return tuple(needed.values())


def _missing_file_hint(settings: RunSettings, message: str) -> str:
    """written_paths.missing_hint for the model or adapter file the refusal `message` names (`C:\\m.safetensors: no
    such model file`), if it names one; "" otherwise."""
    named = (settings.model, *settings.adapter, *(text.rpartition(":")[0] for text in settings.adapter))
    return next((hint for path in named if path and is_path(path) and path in message
                 and (hint := missing_hint(path))), "")


def _copied(settings, **changes):
    """`settings` (RunSettings or Run) with `changes` that need no check, without checking every value again as
    dataclasses.replace would (it builds the settings anew): another seed (the 100,000 clips of one job differ in
    nothing else, and their seeds were checked with the job's: seed + num - 1 within its limit; one of _seed_for's,
    within it too), none, or num 1: planning built each job's settings three times over."""
    copied = object.__new__(type(settings))
    copied.__dict__.update(settings.__dict__, **changes)
    return copied


def _seed_for(stem: str) -> int:
    """A job's seed when none is given: fixed by its output name, so a re-run makes the same clip and two
    jobs do not make the same one. Hashed as the name's bytes: a name that is not UTF-8 (Python holds its odd bytes as
    lone surrogates, which plain encode() refuses) has its own seed, and a UTF-8 one the seed it always had."""
    return int.from_bytes(hashlib.sha256(stem.encode("utf-8", "surrogateescape")).digest()[:4], "big") >> 1
