"""Batch jobs (`mmgen batch JOBS.yaml`) as a Python API: `plan_batch` reads and checks the whole file and
decides what still has to run; `run_batch` runs it — under torchrun, this process's share of it, with every
process's outcomes gathered.

    plan = plan_batch("jobs.yaml")            # raises BatchInvalid listing every problem with its line
    outcomes = run_batch(plan, progress=print)

The modules: schema (the file), plan (the jobs and their checks), jobs (what a plan holds), job_hash (content
hashes), manifest (what is done), run (execution and the split between processes).
"""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "manifest": ["MANIFEST_NAME", "Manifest"],
        "jobs": ["STATUS_TEXT", "Download", "Job", "Plan"],
        "plan": ["plan_batch"],
        "run": ["Outcome", "Share", "run_batch", "run_plan"],
        "schema": ["BatchInvalid", "Problem"],
    },
)
