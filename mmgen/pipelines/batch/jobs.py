"""What a batch plan holds (plan.plan_batch makes it; run, the dry run and --json read it): its jobs, one per output
file, each job's status in the manifest, and the models to download before they run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmgen.pipelines.batch.job_hash import digest
from mmgen.pipelines.batch.manifest import Record
from mmgen.pipelines.batch.schema import BatchFile, JobSpec
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.settings import SEED_BITS, RunSettings, seed_taken

if TYPE_CHECKING:
    from mmgen.pipelines.clips import Provenance
    from mmgen.pipelines.session import Run

Status = Literal["new", "done", "changed", "incomplete", "failed", "damaged"]
# The dry run's table says each status in --json's word (the README's), then what the run does with it.
STATUS_TEXT = {
    "new": "new: run",
    "done": "done: skip",
    "changed": "changed: redo",
    "incomplete": "incomplete (interrupted): redo",
    "failed": "failed (before): retry",
    "damaged": "damaged (outputs changed): redo",
}


@dataclass(frozen=True)
class Job:
    """One output of the batch: what makes it, where it goes, and the hash that says whether it is done."""

    number: int  # 1-based over all outputs, in file order
    spec: JobSpec
    input: Path | None
    output: str  # the mp4, relative to the output folder (posix): the manifest key
    settings: RunSettings  # of the job's kind: the job's own over `defaults:` over the command's, seed resolved
    run: Run  # the settings resolved and checked (session.prepare), the job's seed included
    files: OutputPaths
    hash: str
    payloads: tuple[dict, ...] = dataclasses.field(default=(), compare=False, repr=False)  # JobHasher.hash

    @property
    def kind(self) -> str:
        return self.spec.kind

    def hashed_as(self, recorded: str, seed: int | None = None, respelled: bool = False) -> bool:
        """Whether a record's content hash is this job's: its own, or as an older mmgen hashed it, naming the
        models by other sha256s (weights.identity.model_sha256s) — worked out only for a record that is not. A
        record's `seed` of 2^32 or more, this job's seed in its low 32 bits, is the same job too: mmgen before
        2026-12 took it, and torch's generator kept only those bits, so it made what this seed makes (the job
        of a file that follows the refusal's hint, `seed 4294967294 makes what it made before`, is done). So is the
        record's seed where it names the job's output in another Unicode form (`respelled`: the batch file saved
        in NFC since): a seed not given is its name's, hashed from the name's bytes as then spelled."""
        older = seed is not None and seed >= 2**SEED_BITS and seed_taken(seed) == self.seed
        seeds = [self.seed, seed] if seed is not None and (older or respelled) else [self.seed]
        return recorded == self.hash or any(digest({**payload, "seed": each}) == recorded
                                            for payload in self.payloads for each in seeds)

    @property
    def seed(self) -> int:
        return self.run.seed

    def hash_made_by(self, loaded: Provenance) -> str:
        """The content hash of what this job made with the files it loaded (its sidecar's model_sha256, its
        upsampler_sha256 and upsampling, and each adapter's sha256), which its "done" record keeps: the model or an adapter file may have been replaced since
        planning hashed it (a `finetune --resume` ending, `models import --overwrite`), and the manifest vouches for
        the bytes that made the clip, as the sidecar does — so a re-run skips it while those files stay, and redoes
        it once the old ones are back."""
        if not self.payloads:
            return self.hash
        planned = self.payloads[0]
        made = {**planned, "model_sha256": loaded.model_sha256 or planned["model_sha256"],
                "upsampler_sha256": loaded.upsampler_sha256 or planned["upsampler_sha256"]}
        if "upsampling" in planned:  # as its entry said when loaded (`upsampling`), which may have changed since
            made["upsampling"] = loaded.upsampling or planned["upsampling"]
        if "adapters" in planned:  # each as planned (its weight, in the run's order), by the file it loaded
            made["adapters"] = [{**use, "sha256": read["sha256"]}
                                for use, read in zip(planned["adapters"], loaded.adapters or (), strict=True)]
        return self.hash if made == planned else digest({**made, "seed": self.seed})


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
    records: Mapping[str, Record] = dataclasses.field(default_factory=dict)  # the manifest's, when planned
    # the notes said while planning, which running the plan goes on from (one note for a batch's every job)
    notes_said: set[str] = dataclasses.field(default_factory=set, compare=False, repr=False)
    # what planning found of how the jobs would run (fp16 on a CPU), said when they run, not of a refused batch
    remarks: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)

    def todo(self) -> list[Job]:
        return [job for job in self.jobs if self.status[job.number] != "done"]
