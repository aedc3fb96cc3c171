"""Where a batch's jobs write, checked before any work: never over the batch file, its manifest or any file a job
reads (an output never replaces an input), never two jobs into one file, and never over a file this batch did not
write unless --overwrite; and where each job stands in the manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mmgen.errors import UsageError
from mmgen.files import check_output_target, same_file
from mmgen.pipelines.batch.manifest import Manifest, Record
from mmgen.pipelines.batch.schema import Problem
from mmgen.pipelines.session import input_files

if TYPE_CHECKING:
    from mmgen.pipelines.batch.plan import Job, Status


def check_not_manifest(batch_file: Path, manifest: Manifest) -> None:
    """The batch appends to the output folder's manifest (under its lock file): neither may be the batch file."""
    for path in (manifest.path, manifest.lock):
        if same_file(batch_file, path):
            raise UsageError(f"cannot use {batch_file} as the batch file: it is {path.name}, which the batch "
                             f"writes in {manifest.folder}", hint="move the batch file, or choose another -o")


def check_targets(jobs: list[Job], batch_file: Path, problems: list[Problem]) -> list[Job]:
    """The jobs whose files can be outputs: none is a symlink loop or a file any job reads — the batch file,
    a job's input, model or adapter (an output never replaces an input)."""
    inputs = sorted({*(job.input for job in jobs if job.input is not None),
                     *(path for job in jobs for path in input_files(job.settings))})
    fine = []
    for job in jobs:
        try:
            for path in job.files.files.values():
                if same_file(path, batch_file):
                    raise UsageError(f"cannot write {path}: it is the batch file", hint="an output never replaces an input")
                check_output_target(path, inputs)
        except UsageError as e:
            problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {e}"))
        else:
            fine.append(job)
    return fine


def check_unique(jobs: list[Job], problems: list[Problem]) -> None:
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


def status_of(job: Job, record: Record | None, manifest: Manifest, problems: list[Problem], overwrite: bool
            ) -> Status:
    """Where the job stands in the manifest; a file in its way that the batch did not write is a problem."""
    if record is None:
        existing = [p for p in job.files.files.values() if os.path.lexists(p)]
        if existing and not overwrite:
            problems.append(Problem(job.spec.line, f"job {job.spec.index} ({job.kind}): {existing[0]} exists and "
                                    "was not written by this batch (pass --overwrite to replace it)"))
        return "new"
    if record.state == "done":
        if record.hash != job.hash:
            return "changed"
        return "done" if manifest.intact(record) else "damaged"
    return "incomplete" if record.state == "started" else "failed"
