"""Batch jobs (`mmgen batch JOBS.yaml`) as a Python API: `plan_batch` reads and checks the whole file and
decides what still has to run; `run_plan` runs it (or one torchrun rank's share of it).

    plan = plan_batch("jobs.yaml")            # raises BatchInvalid listing every problem with its line
    outcomes = run_plan(plan, progress=print)

The modules: batch_schema (the file), batch_plan (jobs, checks, content hashes), batch_manifest (what is
done), batch_run (execution).
"""

from mmgen.pipelines.batch_manifest import MANIFEST_NAME, Manifest
from mmgen.pipelines.batch_plan import STATUS_TEXT, Download, Job, Plan, plan_batch
from mmgen.pipelines.batch_run import Outcome, Share, run_plan
from mmgen.pipelines.batch_schema import BatchInvalid, Problem

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
    "run_plan",
]
