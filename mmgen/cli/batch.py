"""`mmgen batch`: run a YAML file of generate/soundtrack/animate jobs — checked first, resumable, and split over
the processes of `torchrun --nproc_per_node N -m mmgen batch ...`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from mmgen.cli.app import app, debug_enabled
from mmgen.cli.options import Overwrite
from mmgen.cli.progress import progress_display
from mmgen.errors import MmgenError
from mmgen.pipelines.batch import (
    MANIFEST_NAME,
    STATUS_TEXT,
    BatchInvalid,
    Outcome,
    Plan,
    Share,
    plan_batch,
    run_plan,
)
from mmgen.pipelines.events import quiet
from mmgen.runtime import processes as distributed

FULL_TABLE_ROWS = 50  # longer batches list only the jobs that did not finish
_STYLE = {"done": "green", "skipped": "dim", "failed": "bold red", "not run": "yellow"}


@app.command(
    epilog="Examples:  mmgen batch jobs.yaml --dry-run   ·   mmgen batch jobs.yaml -o out/   ·   "
    "torchrun --nproc_per_node 4 -m mmgen batch jobs.yaml"
)
def batch(
    jobs_file: Annotated[Path, typer.Argument(metavar="JOBS.yaml", help="The batch file (see presets/batch-example.yaml).")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", "-o", metavar="OUT_DIR", rich_help_panel="Output",
                     help="Output folder (default: the file's output_dir, else outputs/ next to it). It holds "
                     f"{MANIFEST_NAME}, which lets a re-run skip finished jobs."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file and show the jobs and downloads; run nothing.")
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first failed job (default: record it and go on).")
    ] = False,
    device: Annotated[
        str | None,
        typer.Option(metavar="auto|cpu|cuda|cuda:N|mps", rich_help_panel="Hardware",
                     help="Where to run (overrides the file's defaults; under torchrun each rank takes its GPU)."),
    ] = None,
    precision: Annotated[
        Literal["auto", "fp32", "fp16", "bf16"] | None,
        typer.Option(rich_help_panel="Hardware", help="Compute precision (overrides the file's defaults)."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Run many generate / soundtrack / animate jobs from one YAML file.

    The whole file is checked first: every problem is reported with its line, and nothing runs.

    Jobs that use the same model run together, so it loads once. A failed job is recorded and the rest go on.

    Re-running skips jobs that are done and intact, and redoes changed or interrupted ones.
    """
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    console = Console(stderr=True, highlight=False)
    try:
        plan = plan_batch(jobs_file, out_dir, device=device, precision=precision, overwrite=overwrite,
                          local_rank=local_rank)
    except BatchInvalid as e:
        if rank == 0:
            for line in e.lines():
                print(line, file=sys.stderr)
        raise
    if dry_run:
        if rank == 0:
            show_plan(plan, _stdout())
        return
    processes = distributed.start(plan.jobs[0].run.compute.device.type)
    share = Share(processes.rank, processes.world_size)
    prefix = f"rank {share.rank}: " if share.world_size > 1 else ""
    mine = share.of(plan.jobs)
    done_before = sum(plan.status[job.number] == "done" for job in mine)
    if done_before:
        console.print(f"{prefix}{done_before} of {len(mine)} jobs already done: skipped")
    try:
        with progress_display(console) as progress:
            outcomes = run_plan(
                plan, share=share, fail_fast=fail_fast, overwrite=overwrite,
                progress=progress if console.is_terminal else quiet,
                on_outcome=lambda outcome: _say(console, prefix, outcome, len(mine)),
            )
        everything = sorted((o for part in processes.gather(outcomes) for o in part), key=lambda o: o.number)
    finally:
        distributed.stop(processes)
    if processes.is_main:
        show_summary(everything, plan, console)
    failed = [o for o in everything if o.ending == "failed"]
    if failed:
        raise MmgenError(f"{len(failed)} of {len(everything)} jobs failed (errors above and in "
                         f"{plan.output_dir / MANIFEST_NAME}); run the same command again to retry them")


def _stdout() -> Console:
    """The dry-run table is the command's output: stdout, wide enough for paths when piped."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _say(console: Console, prefix: str, outcome: Outcome, total: int) -> None:
    if outcome.ending == "skipped":
        return
    style = _STYLE[outcome.ending]
    line = f"{prefix}[{style}]{outcome.ending}[/] job {outcome.number} ({outcome.kind}) {outcome.output}"
    if outcome.ending == "done":
        line += f" [dim]{outcome.seconds:.1f} s[/]"
    console.print(line + (f": {outcome.error}" if outcome.error else ""), markup=True, soft_wrap=True)
    if outcome.traceback and debug_enabled():
        console.print(outcome.traceback, markup=False, soft_wrap=True)


def show_plan(plan: Plan, console: Console) -> None:
    """The expanded jobs, what each will do, and the model downloads the batch needs."""
    table = Table(title=f"{plan.batch.path} → {plan.output_dir}", title_justify="left")
    for column in ("#", "line", "kind", "input", "output", "model", "sampling", "seed", "status"):
        table.add_column(column, justify="right" if column in ("#", "line", "seed") else "left")
    for job in plan.jobs:
        sampling = job.run.sampling
        table.add_row(
            str(job.number), str(job.spec.line), job.kind, job.input.name if job.input else "—", job.output,
            Path(job.run.model).name, f"{sampling.sampler} · {sampling.steps} steps", str(job.seed),
            STATUS_TEXT[plan.status[job.number]],
        )
    console.print(table)
    if plan.downloads:
        downloads = Table(title="Models to download first", title_justify="left")
        for column in ("model", "size", "from"):
            downloads.add_column(column)
        for d in plan.downloads:
            downloads.add_row(d.name, f"{d.size / 1e6:.0f} MB" if d.size else "?", d.url)
        console.print(downloads)
    else:
        console.print("No model downloads needed.")
    todo = len(plan.todo())
    console.print(f"{len(plan.jobs)} jobs: {todo} to run, {len(plan.jobs) - todo} done (dry run: nothing was run)")


def show_summary(outcomes: list[Outcome], plan: Plan, console: Console) -> None:
    """A table of how each job ended (only the unfinished ones for a long batch) and the totals."""
    rows = outcomes if len(outcomes) <= FULL_TABLE_ROWS else [o for o in outcomes if o.ending in ("failed", "not run")]
    if rows:
        errors = any(o.error for o in rows)
        table = Table(title="Batch summary", title_justify="left")
        for column in ("#", "kind", "output", "result", "time", *(["error"] if errors else [])):
            table.add_column(column, justify="right" if column in ("#", "time") else "left")
        for o in rows:
            table.add_row(str(o.number), o.kind, o.output, f"[{_STYLE[o.ending]}]{o.ending}[/]",
                          f"{o.seconds:.1f} s" if o.ending in ("done", "failed") else "",
                          *([o.error or ""] if errors else []))
        console.print(table)
    counts = {ending: sum(o.ending == ending for o in outcomes) for ending in _STYLE}
    console.print(f"{len(outcomes)} jobs: " + ", ".join(f"{n} {ending}" for ending, n in counts.items() if n)
                  + f" · outputs in {plan.output_dir}")
