"""How `mmgen batch` shows a batch: the dry-run table of jobs and downloads, a line per finished job, and the
summary table at the end."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from mmgen.cli.app import debug_enabled
from mmgen.output_folders import NO_LONGER_THERE
from mmgen.terminal import counted, markup_text, shortened, show_table, size_text

if TYPE_CHECKING:
    from rich.console import Console

    from mmgen.errors import FolderReplaced
    from mmgen.pipelines.batch import Job, Outcome, Plan

FULL_TABLE_ROWS = 50  # longer batches list only the jobs that did not finish
SHOWN_ROWS = 100  # a dry run's table shows its first rows, then counts per status: rich drew 10,000 rows in seconds
_STYLE = {"done": "green", "skipped": "dim", "failed": "bold red", "not run": "yellow"}


def say(console: Console, prefix: str, outcome: Outcome, total: int, eta: str = "") -> None:
    """A job's line as it ends, its number out of the batch's `total` jobs (as the plain `clips: 3/8` lines count);
    a job done says the time left after it, `eta` (progress.eta's `, ETA 0:12:05`, where no bar shows it).
    None for a job skipped, or not run (after a stop or --fail-fast's failed job: the
    summary right after lists those, a row per run of them — not 99,997 lines after a Ctrl-C at job 3)."""
    if outcome.ending in ("skipped", "not run"):
        return
    style = _STYLE[outcome.ending]
    line = f"{prefix}[{style}]{outcome.ending}[/] job {outcome.number}/{total} ({outcome.kind}) {markup_text(outcome.output)}"
    if outcome.ending == "done":
        line += f" [dim]{outcome.seconds:.1f} s{eta}[/]"
    console.print(line + (f": {markup_text(shortened(outcome.error))}" if outcome.error else ""), markup=True, soft_wrap=True)
    if outcome.traceback and debug_enabled():
        console.print(outcome.traceback, markup=False, soft_wrap=True)


def outcome_json(outcome: Outcome, plan: Plan) -> dict:
    """`batch --json`'s line for one job: its number, kind, output and how it ended (and why it failed); a job done
    in this run adds its output's sidecar object, as `generate --json` prints it."""
    head = {"job": outcome.number, "kind": outcome.kind, "output": outcome.output, "result": outcome.ending}
    if outcome.ending in ("done", "failed"):
        head["seconds"] = round(outcome.seconds, 3)
    if outcome.error:
        head["error"] = outcome.error
    return {**head, **(outcome.record or {"mp4": str(plan.output_dir / outcome.output)})}


def job_json(job: Job, plan: Plan) -> dict:
    """`batch --dry-run --json`'s line for one job: what the dry run's table shows of it."""
    sampling = job.run.sampling
    return {"job": job.number, "line": job.spec.line, "kind": job.kind,
            "input": str(job.input) if job.input else None, "output": job.output, "mp4": str(job.files.mp4),
            "model": job.run.model, "sampler": sampling.sampler, "steps": sampling.steps, "seed": job.seed,
            "status": plan.status[job.number]}


def show_downloads(plan: Plan, console: Console) -> None:
    """The model downloads the batch needs, and how many of its jobs are to run."""
    if plan.downloads:
        downloads = Table(title="Models to download first", title_justify="left")
        for column in ("model", "size", "from"):
            downloads.add_column(column, no_wrap=True)  # names and URLs whole: a line each where they do not fit
        for d in plan.downloads:
            downloads.add_row(markup_text(d.name), size_text(d.size), markup_text(d.url))
        show_table(console, downloads, [(d.name, size_text(d.size), d.url) for d in plan.downloads])
    else:
        console.print("No model downloads needed.")
    todo = len(plan.todo())
    console.print(f"{counted(len(plan.jobs), 'job')}: {todo} to run, {len(plan.jobs) - todo} done (dry run: nothing was run)")


def show_plan(plan: Plan, console: Console) -> None:
    """The expanded jobs, what each will do, and the model downloads the batch needs. Past SHOWN_ROWS rows, the
    first of them, then how many jobs are in each state (`--json` lists every job): a 10,000-job dry run spent most
    of its time in rich drawing rows no one scrolls back through."""
    table = Table(title=f"{markup_text(plan.batch.path)} → {markup_text(plan.output_dir)}", title_justify="left")
    for column in ("#", "line", "kind", "input", "output", "model", "sampling", "seed", "status"):
        table.add_column(column, justify="right" if column in ("#", "line", "seed") else "left", no_wrap=True)
    from mmgen.pipelines.batch import STATUS_TEXT

    entries = []  # a job a line, each cell whole, where the terminal is too narrow for the table
    rows = _runs(plan)
    for jobs in rows[:SHOWN_ROWS]:
        first, last = jobs[0], jobs[-1]
        sampling = first.run.sampling
        table.add_row(
            _span(first.number, last.number, "–"), str(first.spec.line), first.kind,
            markup_text(_span(first.input.name, last.input.name)) if first.input else "—",
            markup_text(_span(first.output, last.output)), markup_text(Path(first.run.model).name), f"{sampling.sampler} · {counted(sampling.steps, 'step')}", _span(first.seed, last.seed),
            STATUS_TEXT[plan.status[first.number]],
        )
        entries.append((f"#{_span(first.number, last.number, '–')} {_span(first.output, last.output)}", first.kind,
                        first.input and f"input {_span(first.input.name, last.input.name)}", Path(first.run.model).name,
                        f"{sampling.sampler} · {counted(sampling.steps, 'step')}", f"seed {_span(first.seed, last.seed)}",
                        f"line {first.spec.line}", STATUS_TEXT[plan.status[first.number]]))
    show_table(console, table, entries)
    if len(rows) > SHOWN_ROWS:
        hidden = [job for jobs in rows[SHOWN_ROWS:] for job in jobs]
        console.print(f"… and {counted(len(hidden), 'more job')} ({_span(hidden[0].number, hidden[-1].number, '–')}): "
                      "--json lists every job, a line each")
        states = Counter(plan.status[job.number] for job in plan.jobs)
        console.print("By status: " + ", ".join(f"{states[state]} {text}" for state, text in STATUS_TEXT.items()
                                                if states[state]))
    show_downloads(plan, console)


def _runs(plan: Plan) -> list[list[Job]]:
    """The dry run's rows: each job, or in a long batch (over FULL_TABLE_ROWS jobs) each run of consecutive jobs
    of one batch entry in one state — 100,000 clips of one job are one row, not a table rich takes minutes to draw."""
    if len(plan.jobs) <= FULL_TABLE_ROWS:
        return [[job] for job in plan.jobs]
    runs: list[list[Job]] = []
    for job in plan.jobs:
        last = runs[-1][-1] if runs else None
        if last is not None and last.spec is job.spec and plan.status[last.number] == plan.status[job.number]:
            runs[-1].append(job)
        else:
            runs.append([job])
    return runs


def _not_run_together(outcomes: list[Outcome]) -> list[list[Outcome]]:
    """A long batch's summary rows: each failed job, and each run of consecutive jobs of one kind not run (a batch
    of 100,000 stopped early is a few rows)."""
    rows: list[list[Outcome]] = []
    for o in outcomes:
        row = rows[-1] if rows else None
        if row and o.ending == row[-1].ending == "not run" and o.kind == row[-1].kind and (
                len(row) == 1 or o.number - row[-1].number == row[1].number - row[0].number):  # a rank's: every Nth
            row.append(o)
        else:
            rows.append([o])
    return rows


def _span(first: object, last: object, between: str = " … ") -> str:
    return str(first) if first == last else f"{first}{between}{last}"


def show_summary(outcomes: list[Outcome], plan: Plan, console: Console, whose: str = "",
                 gone: FolderReplaced | None = None) -> None:
    """A table of how each job ended (only the unfinished ones for a long batch) and the totals. `whose`: the process
    ("rank 1") whose share of the jobs these are, where each process of a torchrun job sums up its own (a stop):
    said in the title and the totals, so the summaries read as one per process, not as one said twice. `gone`: an
    output folder that left its name while the batch ran (OUT, or a job's folder in it), if one did."""
    rows = ([[o] for o in outcomes] if len(outcomes) <= FULL_TABLE_ROWS
            else _not_run_together([o for o in outcomes if o.ending in ("failed", "not run")]))
    if rows:
        errors = any(o.error for o, *_ in rows)
        table = Table(title=f"Batch summary of {whose}'s jobs" if whose else "Batch summary", title_justify="left")
        for column in ("#", "kind", "output", "result", "time", *(["error"] if errors else [])):
            table.add_column(column, justify="right" if column in ("#", "time") else "left",
                             **({"overflow": "fold"} if column == "error" else {"no_wrap": True}))
        entries = []  # a job a line, each cell whole, where the terminal is too narrow for the table
        for o, *more in rows:
            last = more[-1] if more else o
            table.add_row(_span(o.number, last.number, "–"), o.kind, markup_text(_span(o.output, last.output)),
                          f"[{_STYLE[o.ending]}]{o.ending}[/]",
                          f"{o.seconds:.1f} s" if o.ending in ("done", "failed") else "",
                          *([markup_text(shortened(o.error or ""))] if errors else []))
            entries.append((f"#{_span(o.number, last.number, '–')} {_span(o.output, last.output)}", o.kind, o.ending,
                            f"{o.seconds:.1f} s" if o.ending in ("done", "failed") else "", shortened(o.error or "")))
        show_table(console, table, entries)
    counts = {ending: sum(o.ending == ending for o in outcomes) for ending in _STYLE}
    totals = f"{counted(len(outcomes), 'job')}: " + ", ".join(f"{n} {ending}" for ending, n in counts.items() if n)
    console.print(f"{whose}: {totals}" if whose else totals, f"· {_outputs_where(plan.output_dir, gone)}")


def _outputs_where(output_dir: Path, gone: FolderReplaced | None) -> str:
    """Where the batch's outputs are: in OUT — or, where OUT itself left its name as the batch ran (`gone`), not
    there: it was moved, renamed or removed (nothing is at its name), or replaced by another folder; where a job's
    folder inside it did (`sub/deep`), the outputs in that one are not in OUT but where it went."""
    out = Path(os.path.abspath(output_dir))
    if gone is None or (gone.folder != out and out not in gone.folder.parents):
        return f"outputs in {markup_text(output_dir)}"
    if not os.path.lexists(output_dir):
        return f"{markup_text(output_dir)} {NO_LONGER_THERE} (moved, renamed or removed), with its outputs"
    if gone.folder == out:
        return f"outputs in the folder that was at {markup_text(output_dir)}"
    return f"outputs in {markup_text(output_dir)}; those in {markup_text(gone.folder.relative_to(out))} {gone.went}"
