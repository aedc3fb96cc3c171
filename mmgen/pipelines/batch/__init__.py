"""Batch jobs (`mmgen batch JOBS.yaml`) as a Python API: `plan_batch` reads and checks the whole file and
decides what still has to run; `run_batch` runs it — under torchrun, this process's share of it, with every
process's outcomes gathered.

    plan = plan_batch("jobs.yaml")            # raises BatchInvalid listing every problem with its line
    outcomes = run_batch(plan, progress=print)

The modules: schema (the file), plan (jobs, checks, content hashes), manifest (what is done), run (execution
and the split between processes).
"""

from mmgen.pipelines.batch.manifest import MANIFEST_NAME, Manifest
from mmgen.pipelines.batch.plan import STATUS_TEXT, Download, Job, Plan, plan_batch
from mmgen.pipelines.batch.run import Outcome, Share, run_batch, run_plan
from mmgen.pipelines.batch.schema import BatchInvalid, Problem

__all__ = [
    "MANIFEST_NAME",
    "STATUS_TEXT",
    "BatchInvalid",
    "Download",
    "Job",
    "Manifest",
    "Outcome",
    "Plan",
    "Problem",
    "Share",
    "plan_batch",
    "run_batch",
    "run_plan",
]
