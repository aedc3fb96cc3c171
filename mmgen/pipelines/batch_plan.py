"""From a batch file to the jobs it means — one per output file — checked before any work starts.

Planning expands `num:` and `inputs:` globs, merges options (the job's, then `defaults:`, then the command's
own defaults), checks every input, model, output name and setting, and compares each job's content hash with
the manifest to decide what still has to run. All problems are collected and raised together (BatchInvalid).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import torch

from mmgen.config import to_dict
from mmgen.errors import MediaError, ModelNotFound, UsageError
from mmgen.pipelines.batch_manifest import Manifest, Record
from mmgen.pipelines.batch_schema import (
    KIND_OPTIONS,
    BatchFile,
    BatchInvalid,
    JobOptions,
    JobSpec,
    Problem,
    read_batch_file,
)
from mmgen.pipelines.conditional import check_input
from mmgen.pipelines.outputs import OutputPaths, beside
from mmgen.pipelines.session import Run, prepare
from mmgen.runtime.device import select_compute
from mmgen.weights import ModelCache, availability, fetch_plan, load_registry, sha256_file
from mmgen.weights.download import offline
from mmgen.weights.load import is_path

Status = Literal["new", "done", "changed", "incomplete", "failed", "damaged"]
STATUS_TEXT = {
    "new": "to run",
    "done": "done (skip)",
    "changed": "changed: redo",
    "incomplete": "interrupted: redo",
    "failed": "failed before: retry",
    "damaged": "outputs changed: redo",
}
# What a job's kind gets when neither the job nor `defaults:` sets an option (the commands' own defaults).
COMMAND_DEFAULTS = JobOptions(model="demo", num=1, overlap=0.25, mix=0.0, wav=False, previews=True)
GIVEN = {"soundtrack": "video", "animate": "audio"}  # the modality a conditional job's input provides
_NOT_HASHED = ("model", "seed", "num")  # the model counts by its sha256, the seed per clip, num not at all


@dataclass(frozen=True)
class Job:
    """One output of the batch: what makes it, where it goes, and the hash that says whether it is done."""

    number: int  # 1-based over all outputs, in file order
    spec: JobSpec
    input: Path | None
    output: str  # the mp4, relative to the output folder (posix): the manifest key
    options: JobOptions  # effective options of this kind, seed resolved
    run: Run  # validated settings, the job's seed included
    files: OutputPaths
    hash: str

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def seed(self) -> int:
        return self.run.seed


@dataclass(frozen=True)
class Download:
    """A model the batch needs that is not on this machine yet."""

    name: str
    url: str
    size: int | None


@dataclass(frozen=True)
class Plan:
    batch: BatchFile
    output_dir: Path
    jobs: tuple[Job, ...]
    status: Mapping[int, Status]  # by job number
    downloads: tuple[Download, ...]

    def todo(self) -> list[Job]:
        return [job for job in self.jobs if self.status[job.number] != "done"]


def plan_batch(
    path: str | Path,
    output_dir: str | Path | None = None,
    *,
    device: str | None = None,
    precision: str | None = None,
    overwrite: bool = False,
    local_rank: int = 0,
) -> Plan:
    """Read and check the whole batch file; BatchInvalid lists every problem with its line. `device` and
    `precision` (the command's flags) override `defaults:`; `overwrite` lets jobs replace files this batch
    did not write. Under torchrun, `local_rank` picks this process's GPU for device auto or cuda."""
    problems: list[Problem] = []
    batch = read_batch_file(path, problems, Path(output_dir) if output_dir is not None else None)
    planner = _Planner(batch, problems)
    device = device or batch.device or "auto"
    if device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    jobs = planner.jobs(device, precision or batch.precision or "auto")
    _check_unique(jobs, problems)
    manifest = Manifest(batch.output_dir)
    records = manifest.latest()
    status = {job.number: _status(job, records.get(job.output), manifest, problems, overwrite) for job in jobs}
    downloads = planner.downloads(jobs)
    if problems:
        raise BatchInvalid(batch.path, problems)
    return Plan(batch, batch.output_dir, tuple(jobs), status, downloads)


class _Planner:
    """Expands and checks the jobs of one batch file, memoising what many jobs share (models, settings)."""

    def __init__(self, batch: BatchFile, problems: list[Problem]):
        self.batch = batch
        self.folder = batch.path.resolve().parent
        self.problems = problems
        self.registry = load_registry()
        self.cache = ModelCache()
        self._runs: dict[tuple, Run | UsageError] = {}
        self._model_sha256: dict[str, str] = {}

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
            options = self._effective(spec)
            for input, stem, seed in self._targets(spec, options):
                run = self._run(spec, options, seed, device, precision)
                if run is None:
                    continue
                output = f"{stem}.mp4"
                # options hold only their kind's fields: previews is None unless generate, wav unless soundtrack
                files = beside(self.batch.output_dir / output, previews=bool(options.previews),
                               wav=bool(options.wav))
                options_here = dataclasses.replace(options, seed=seed)
                job_hash = self._hash(spec, input, options_here, run)
                jobs.append(Job(len(jobs) + 1, spec, input, output, options_here, run, files, job_hash))
        return jobs

    def _effective(self, spec: JobSpec) -> JobOptions:
        names = KIND_OPTIONS[spec.kind]
        options = spec.options.over(self.batch.defaults.only(names)).over(COMMAND_DEFAULTS.only(names))
        if is_path(options.model) and not Path(options.model).is_absolute():
            options = dataclasses.replace(options, model=str(self.folder / options.model))
        return options

    def _targets(self, spec: JobSpec, options: JobOptions) -> list[tuple[Path | None, str, int]]:
        """(input, output stem, seed) of every output the job makes."""
        name = self._checked_name(spec)
        if spec.kind == "generate":
            stem = name or f"generate_{spec.index}"
            first = options.seed if options.seed is not None else _seed_for(stem)
            if options.num == 1:
                return [(None, stem, first)]
            return [(None, f"{stem}_{k:04d}", first + k) for k in range(options.num)]
        targets = []
        for input in self._inputs(spec, options):
            stem = (name or f"{{stem}}_{spec.kind}").replace("{stem}", input.stem)
            targets.append((input, stem, options.seed if options.seed is not None else _seed_for(stem)))
        return targets

    def _checked_name(self, spec: JobSpec) -> str | None:
        """The job's output name without ".mp4", or None; names must stay inside the output folder."""
        if spec.name is None:
            return None
        name = spec.name.removesuffix(".mp4")
        line, where = spec.line_of("name"), f"job {spec.index} ({spec.kind}): name: {spec.name!r}"
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
            self.problem(line, f"{where} must be relative to the output folder, not an absolute path")
        elif ".." in parts:
            self.problem(line, f"{where} must stay inside the output folder (no '..')")
        elif spec.inputs is not None and "{stem}" not in name:
            self.problem(line, f"{where} must contain {{stem}} (the input's name), since `inputs:` is a glob")
        else:
            target = (self.batch.output_dir / f"{name}.mp4").resolve()
            if not target.is_relative_to(self.batch.output_dir.resolve()):
                self.problem(line, f"{where} leads outside the output folder")
            else:
                return name
        return None

    def _inputs(self, spec: JobSpec, options: JobOptions) -> list[Path]:
        if spec.input is not None:
            if not spec.input.is_file():
                self.problem(spec.line_of("input"), f"job {spec.index} ({spec.kind}): input: {spec.input} does not exist")
                return []
            candidates, line = [spec.input], spec.line_of("input")
        elif spec.inputs is not None:
            out = self.batch.output_dir.resolve()
            # root_dir, not folder / pattern: the folder's own name may hold glob characters such as "["
            matches = glob.glob(spec.inputs, root_dir=self.folder, recursive=True)
            candidates = [self.folder / p for p in sorted(matches)]
            # a batch never eats its own outputs (a glob over a folder that holds the output folder)
            candidates = [p for p in candidates if p.is_file() and not p.resolve().is_relative_to(out)]
            line = spec.line_of("inputs")
            if not candidates:
                self.problem(line, f"job {spec.index} ({spec.kind}): inputs: no file matches {spec.inputs} "
                             f"(in {self.folder})")
        else:
            return []
        usable = []
        for path in candidates:
            needed = [GIVEN[spec.kind], *(["audio"] if options.mix else [])]
            try:
                for modality in needed:
                    check_input(path, modality)
            except MediaError as e:
                self.problem(line, f"job {spec.index} ({spec.kind}): {e}")
            else:
                usable.append(path)
        return usable

    def _run(self, spec: JobSpec, options: JobOptions, seed: int, device: str, precision: str) -> Run | None:
        """The validated settings (prepare) of a job; shared by every job with the same settings."""
        conditional = spec.kind != "generate"
        settings = dict(
            model=options.model, conditional=conditional, preset=options.preset, sampler=options.sampler,
            steps=options.steps, guidance=options.guidance, guidance_scale=options.guidance_scale,
            upscale=options.upscale if spec.kind != "soundtrack" else False, device=device, precision=precision,
        )
        key = tuple(settings.items())
        if key not in self._runs:
            try:
                self._runs[key] = prepare(seed=0, **settings)
            except UsageError as e:
                self._runs[key] = e
        run = self._runs[key]
        if isinstance(run, UsageError):
            if isinstance(run, ModelNotFound) and "model" not in spec.lines and "model" in self.batch.default_lines:
                self.problem(self.batch.default_lines["model"], f"defaults: model: {run}")  # said once, not per job
            else:
                line = spec.line_of("model") if isinstance(run, ModelNotFound) else spec.line
                self.problem(line, f"job {spec.index} ({spec.kind}): {run}")
            return None
        return dataclasses.replace(run, seed=seed)

    def _hash(self, spec: JobSpec, input: Path | None, options: JobOptions, run: Run) -> str:
        """What decides a job's output: change any of it and a re-run redoes the job."""
        described = None
        if input is not None:
            stat = input.stat()
            described = {"path": str(input.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        payload = {
            "kind": spec.kind,
            "input": described,
            "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in _NOT_HASHED},
            "sampling": to_dict(run.sampling),
            "model_sha256": self.model_sha256(run.model),
            "upsampler_sha256": self.model_sha256(run.upsampler) if run.upsampler else None,
            "seed": run.seed,
            "precision": run.compute.precision,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def model_sha256(self, name: str) -> str:
        """The model's identity without loading or downloading it: the file's sha256 for a path, else the
        one the registry names, the cache recorded, or the bundled file has."""
        if name not in self._model_sha256:
            entry = self.registry.entries.get(name)
            record = None if is_path(name) else self.cache.record(name)
            if is_path(name):
                sha256 = sha256_file(Path(name))
            elif entry is not None and entry.weights.sha256:
                sha256 = entry.weights.sha256
            elif record is not None:
                sha256 = record.sha256
            elif entry is not None and entry.weights.bundled and entry.weights.bundled_path.is_file():
                sha256 = sha256_file(entry.weights.bundled_path)
            else:
                sha256 = f"unknown:{name}"
            self._model_sha256[name] = sha256
        return self._model_sha256[name]

    def downloads(self, jobs: list[Job]) -> tuple[Download, ...]:
        """Models to fetch before the jobs can run; under MMGEN_OFFLINE=1 each one is a problem."""
        needed: dict[str, Download] = {}
        for job in jobs:
            for name in filter(None, (job.run.model, job.run.upsampler)):
                entry = self.registry.entries.get(name)
                if name in needed or is_path(name) or availability(name, entry, self.cache) != "downloadable":
                    continue
                source = fetch_plan(entry)  # a URL, or a file in a Google Drive folder
                needed[name] = Download(name, source, entry.weights.size)
                if offline() and not source.startswith("file:"):
                    line = job.spec.line_of("model") if "model" in job.spec.lines else job.spec.line
                    self.problem(line, f"model {name} must be downloaded, but MMGEN_OFFLINE=1 forbids it "
                                 f"(import it with `mmgen models import FILE --name {name}`)")
        return tuple(needed.values())


def _seed_for(stem: str) -> int:
    """A job's seed when none is given: fixed by its output name, so a re-run makes the same clip and two
    jobs do not make the same one."""
    return int.from_bytes(hashlib.sha256(stem.encode()).digest()[:4], "big") >> 1


def _check_unique(jobs: list[Job], problems: list[Problem]) -> None:
    """No two jobs may write the same file (sidecars and previews included)."""
    owners: dict[Path, Job] = {}
    for job in jobs:
        for path in job.files.files.values():
            first = owners.setdefault(path.resolve(), job)
            if first is not job:
                problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {path.name} is also "
                                        f"written by job {first.spec.index} (line {first.spec.line}); give a "
                                        "different `name`"))
                break


def _status(job: Job, record: Record | None, manifest: Manifest, problems: list[Problem], overwrite: bool
            ) -> Status:
    """Where the job stands in the manifest; a file in its way that the batch did not write is a problem."""
    if record is None:
        existing = [p for p in job.files.files.values() if p.exists()]
        if existing and not overwrite:
            problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {existing[0]} exists and "
                                    "was not written by this batch (pass --overwrite to replace it)"))
        return "new"
    if record.state == "done":
        if record.hash != job.hash:
            return "changed"
        return "done" if manifest.intact(record) else "damaged"
    return "incomplete" if record.state == "started" else "failed"
