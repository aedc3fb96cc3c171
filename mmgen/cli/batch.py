"""`mmgen batch`: run a YAML file of generate/soundtrack/animate/retake jobs — checked first, resumable, and split over
the processes of `torchrun --nproc_per_node N -m mmgen batch ...`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mmgen.cli import options
from mmgen.cli._batch_report import job_json, outcome_json, say, show_downloads, show_plan, show_summary
from mmgen.cli._interrupted import speaks_for
from mmgen.cli._results import print_json
from mmgen.cli.app import app, invoked
from mmgen.cli.progress import PlainLines, progress_display
from mmgen.errors import FolderReplaced, MmgenError, UsageError, alike_in_every_process
from mmgen.output_folders import replaced_holding
from mmgen.pipelines.batch.manifest import MANIFEST_NAME
from mmgen.runtime import torchrun
from mmgen.terminal import console as terminal_console
from mmgen.terminal import counted, on_terminal, print_utf8, table_console
from mmgen.terminal import say as say_line

if TYPE_CHECKING:
    from mmgen.pipelines.batch import Outcome, Plan


def _print_example(ctx: typer.Context) -> None:
    """`mmgen batch --example`: print the packaged, annotated example batch file to stdout (no JOBS file needed).
    Anything else given with it is refused (exit 2) rather than ignored: `--example --json` printed YAML, `--example
    -o jobs.yaml` wrote no file. --debug is taken, as every command takes it, before the command or after (the
    root's switch: `mmgen --debug batch --example` never reaches this check). Refused too with stdout closed, as every command that only prints is; and, as one,
    it says nothing of a reader that stops reading (`| head`): no line about files written, which it writes none of."""
    from mmgen.presets import batch_example

    given = [param for param in ctx.command.params if param.name not in ("example", "debug")  # --debug: any command's
             and getattr(ctx.get_parameter_source(param.name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]
    if given:
        named = ", ".join("/".join(p.opts) if p.param_type_name == "option" else str(ctx.params[p.name]) for p in given)
        raise UsageError(f"--example prints the example batch file and takes nothing else: got {named} (save it with "
                         "`mmgen batch --example > jobs.yaml`, then `mmgen batch jobs.yaml`)")
    if why := options.closed_stdout("the example"):
        raise UsageError(f"--example: {why}")
    invoked.set(None)  # prints only, as --help does: not the batch that writes files (_interrupted's WRITERS)
    print_utf8(batch_example().read_text(encoding="utf-8"))  # UTF-8 as `mmgen batch` reads it, not stdout's cp1252


@app.command(
    epilog="Examples:  `mmgen batch --example > jobs.yaml`,  `mmgen batch jobs.yaml --dry-run`,  `"
    "mmgen batch jobs.yaml -o out/`,  `torchrun --nproc_per_node 4 -m mmgen batch jobs.yaml`"
)
def batch(
    ctx: typer.Context,
    jobs_file: Annotated[  # optional to click only: --example needs none (the command asks for it otherwise)
        Path | None,
        typer.Argument(metavar="JOBS.yaml", show_default=False,
                       help="The batch file (`mmgen batch --example` prints an annotated one)."),
    ] = None,
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
        typer.Option(metavar=options.DEVICE_METAVAR, rich_help_panel="Hardware",
                     help="Where to run (overrides the file's defaults; under torchrun each rank takes its GPU)."),
    ] = None,
    precision: Annotated[
        Literal["auto", "fp32", "fp16", "bf16"] | None,
        typer.Option(rich_help_panel="Hardware", case_sensitive=False, help="Compute precision (overrides the file's defaults)."),
    ] = None,
    overwrite: options.Overwrite = False,
    example: Annotated[
        bool,
        typer.Option("--example",
                     help="Print an annotated example batch file to stdout and exit (`mmgen batch --example > "
                     "jobs.yaml`); it takes no JOBS file and no other option but --debug, which every command takes."),
    ] = False,
    json: Annotated[
        bool,
        typer.Option("--json", rich_help_panel="Output", callback=options.stdout_open,
                     help="Print one JSON object per job to stdout as it ends (job, kind, output, result, and a done "
                     "job's sidecar content; with --dry-run, each planned job and its status); messages go to "
                     "stderr."),
    ] = False,
) -> None:
    """Run many generate / soundtrack / animate / retake jobs from one YAML file.

    The whole file is checked first: every problem is reported with its line, and nothing runs.

    Jobs that use the same model run together, so it loads once. A failed job is recorded and the rest go on.

    Re-running skips jobs that are done and intact, and redoes changed or interrupted ones.
    """
    if example:
        return _print_example(ctx)
    if jobs_file is None:
        raise UsageError("Missing argument 'JOBS.yaml'.")  # click's words, as when it was required
    from mmgen.pipelines.batch.schema import BatchInvalid, read_batch_file
    from mmgen.pipelines.preflight import check_device

    if device is not None:  # the flag's own problem, said as the flag and before the file is read (not as a line of it)
        check_device(device)
    # Under torchrun every process plans the one batch file, before they join: its problems are said once (rank 0).
    with alike_in_every_process():
        # plan_batch's first step, before it is imported (torch: seconds): a batch file that is missing, unreadable
        # or no YAML mapping is said at once, and so are the problems of one whose device or precision is set wrongly
        # (BatchFile.plannable); the problems of the jobs, each with its line, are the plan's to list
        batch_file = read_batch_file(jobs_file, [], out_dir)
        try:
            if not batch_file.plannable:
                raise BatchInvalid(batch_file.path, list(batch_file.problems))
            from mmgen.pipelines.batch import plan_batch

            plan = plan_batch(batch_file, device=device, precision=precision, overwrite=overwrite)  # read once
        except BatchInvalid as e:
            if torchrun.rank() == 0:
                for line in e.lines():
                    say_line(line)
            raise
    from mmgen.pipelines.batch import Share, run_batch

    share = Share.here()
    console = terminal_console(highlight=False)
    if dry_run:
        if share.is_main and json:
            for job in plan.jobs:
                print_json(job_json(job, plan))
            show_downloads(plan, console)
        elif share.is_main:
            show_plan(plan, table_console(stderr=False))  # the dry run's output
        return
    whose = f"rank {share.rank}" if share.world_size > 1 else ""  # under torchrun, the process a line is of
    prefix = f"{whose}: " if whose else ""
    speaks_for(whose)
    mine = share.of(plan.jobs)
    reported: list[Outcome] = []

    def on_start(current: Plan) -> None:  # the output folder is this run's now: what is done cannot change
        done_before = sum(current.status[job.number] == "done" for job in mine)
        if done_before:
            console.print(f"{prefix}{done_before} of {counted(len(mine), 'job')} already done: skipped")

    plain: PlainLines | None = None  # without bars: each job's line says the time left

    def on_outcome(outcome: Outcome) -> None:
        reported.append(outcome)
        say(console, prefix, outcome, len(plan.jobs), plain.eta_of("jobs") if plain else "")
        if json:  # each rank its own jobs, as they end: every job of the batch once
            print_json(outcome_json(outcome, plan))

    try:
        with progress_display(console) as progress:
            plain = progress if isinstance(progress, PlainLines) else None
            outcomes = run_batch(plan, fail_fast=fail_fast, overwrite=overwrite,
                                 progress=progress if on_terminal(console) else plain.inner, on_start=on_start,
                                 on_outcome=on_outcome)
    except (KeyboardInterrupt, MmgenError, OSError) as e:
        # Ctrl-C (then exit 130), or an error that ended the batch once every job was said (its manifest could not be
        # written: a full disk): still say what finished (this process's share), then the error's line
        if isinstance(e, KeyboardInterrupt) or (reported and len(reported) == len(mine)):
            done = [plan.output_dir / o.output for o in reported if o.ending == "done"]
            gone = e if isinstance(e, FolderReplaced) else replaced_holding(done)  # a folder renamed, then Ctrl-C
            show_summary(_so_far(mine, reported, share.rank), plan, console, whose, gone)
        raise
    if share.is_main:
        show_summary(outcomes, plan, console)
    failed = [o for o in outcomes if o.ending == "failed"]
    if failed:
        error = MmgenError(f"{len(failed)} of {counted(len(outcomes), 'job')} failed (errors above and in "
                           f"{plan.output_dir / MANIFEST_NAME}); run the same command again to retry them")
        error.every_process = True  # every process has every outcome (run_batch gathers them): said once
        raise error


def _so_far(mine: list, reported: list[Outcome], rank: int) -> list[Outcome]:
    """How an interrupted run left its jobs: the outcomes it reported, every other job "not run"."""
    from mmgen.pipelines.batch import Outcome

    ended = {o.number: o for o in reported}
    return [ended.get(job.number) or Outcome(job.number, job.kind, job.output, "not run", rank=rank) for job in mine]
