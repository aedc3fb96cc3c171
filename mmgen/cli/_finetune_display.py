"""What `mmgen finetune` shows while it trains and when it ends: rich bars (decoding, then steps with loss and
ETA) on a terminal, otherwise a few plain lines of log steps (the first, each quarter, the last, and every 30 s:
progress_bars.PlainPace, as the other commands' plain progress; every log step is in the run's log.jsonl) with every
note (a probe's av_gap, a preview written); nothing on the other processes of a torchrun job."""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mmgen import terminal
from mmgen.progress_bars import SPEED_WINDOW, FittingProgress, PlainPace, eta
from mmgen.runtime.torchrun import launcher
from mmgen.terminal import counted, path_text, say
from mmgen.train.step_folders import latest_checkpoint

if TYPE_CHECKING:  # the training code (torch) loads when a run starts, not for `mmgen --help`
    from rich.console import Console

    from mmgen.train import FinetuneConfig, FinetuneResult, TrainEvent
    from mmgen.train.events import EventFn


SKIPS_SHOWN = 5  # skipped files named one per line; a folder of thousands of broken files gets a count after them
# The training bar's line, but for its loss text: the label (9), the count, elapsed and remaining times (up to 8
# each), the spaces between the six columns (5), and the least of a bar worth drawing.
_BAR_LINE = 9 + 8 + 8 + 5 + 10


def main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def report(result: FinetuneResult, config: FinetuneConfig, data_dir: Path) -> None:
    """The last lines: where the model is, or how to resume."""
    if not main_process():
        return
    run_dir = result.run_dir
    if result.finished_before:
        say(f"{run_dir}: the run is already finished at step {result.step} ({result.model_path}); nothing to do "
            f"(give --steps above {result.step} to train on)")
    elif result.interrupted:
        say(f"stopped at step {result.step}/{config.steps}; checkpoint saved in {run_dir}/checkpoints")
        where = f"{shlex.quote(str(data_dir))} -o {shlex.quote(str(run_dir))}"
        say(f"resume with:  {launcher()} finetune {where} --resume")
    else:
        if config.lora is not None:
            say(f"done: {counted(result.step, 'step')}; adapter {result.model_path}")
            say(f"try:  mmgen generate -m {shlex.quote(config.init)} --adapter {shlex.quote(str(result.model_path))}")
        else:
            say(f"done: {counted(result.step, 'step')}; model {result.model_path}")
            say(f"try:  mmgen generate -m {shlex.quote(str(result.model_path))}")


def resumable(run_dir: Path, data_dir: Path) -> str | None:
    """What a run stopped without saving (a stop while it wrote its result) keeps, and the command that resumes
    it from there; None when it has no checkpoint yet."""
    if latest_checkpoint(run_dir / "checkpoints") is None:
        return None
    where = f"{shlex.quote(str(data_dir))} -o {shlex.quote(str(run_dir))}"
    return f"kept the checkpoints in {run_dir}/checkpoints: `{launcher()} finetune {where} --resume` resumes the run"


def result_json(result: FinetuneResult, config: FinetuneConfig, data_dir: Path) -> dict:
    """`finetune --json`'s one line: where the run is, how far it got, what it wrote (the model, or the adapter
    with --lora; null while unfinished), the command that resumes an interrupted one, and what the data gave."""
    record: dict[str, Any] = {
        "run_dir": str(result.run_dir), "step": result.step, "steps": config.steps, "interrupted": result.interrupted,
        "adapter" if config.lora is not None else "model": str(result.model_path) if result.model_path else None,
        "checkpoints": str(result.run_dir / "checkpoints"),
    }
    if result.interrupted:
        record["resume"] = f"{launcher()} finetune {shlex.quote(str(data_dir))} -o {shlex.quote(str(result.run_dir))} --resume"
    record |= result.ran_on or {"device": None, "precision": None}  # null: it never trained (stopped, or done before)
    data = result.data  # None: a finished run resumed, nothing read
    record["data"] = data and {"clips": data.clips, "files": data.files, "decoded": data.decoded,
                               "reused": data.reused, "skipped": len(data.skipped)}
    return record


def stopped_json(run_dir: Path, config: FinetuneConfig, data_dir: Path) -> dict:
    """result_json's line for a run stopped outside the loop's "save, then stop" (before its first step has ended,
    or while it wrote its result): what it keeps — the newest checkpoint's step, and the command that resumes from
    it; or nothing (step 0, `checkpoints` and `resume` null: a new run's folder is taken back)."""
    from mmgen.train.run import FinetuneResult

    latest = latest_checkpoint(run_dir / "checkpoints")
    stopped = FinetuneResult(run_dir, latest.step if latest else 0, interrupted=True, model_path=None, data=None)
    record = result_json(stopped, config, data_dir)
    if latest is None:
        record |= {"checkpoints": None, "resume": None}
    return record



def loss_text(values: dict[str, float], room: float = math.inf) -> str:
    """The loss of a log step, with its video and audio parts when `room` columns hold them (not at 80 columns:
    rich then cut the bar's times short, `0:00:…`)."""
    loss = f"loss {values['loss']:.4f}"
    split = f"{loss} (video {values['loss_video']:.4f}, audio {values['loss_audio']:.4f})"
    return split if len(split) <= room else loss


@contextmanager
def display(console: Console | None = None) -> Iterator[EventFn | None]:
    """The trainer's event callback (None on the other processes of a torchrun job), drawing on `console` (a new
    one on stderr when None)."""
    if not main_process():
        yield None
        return
    console = console or terminal.console(soft_wrap=True)  # a skipped file's path and reason stay on one line
    fancy = terminal.draws(console)
    info, elapsed = TextColumn("{task.fields[info]}"), TimeElapsedColumn()
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), info, elapsed,
               TimeRemainingColumn())
    # a narrow terminal leaves out the loss, then the time taken, before it would cut the count or the time left
    with FittingProgress(*columns, optional=(info, elapsed), console=console, transient=False, disable=not fancy,
                         speed_estimate_period=SPEED_WINDOW) as bars:  # without bars, it still counts: the plain ETA
        tasks: dict[str, Any] = {}
        pace = PlainPace(0.0, bars.get_time())  # the plain step lines': the first due at once

        def bar(name: str, done: int, total: int, info: str = "") -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total, completed=done, info=info)
            bars.update(tasks[name], completed=done, total=total, **({"info": info} if info else {}))

        def show(event: TrainEvent) -> None:
            if event.kind == "data" and event.data is None:
                bar("decoding", event.step, event.total)
            elif event.kind == "data":
                report = event.data
                console.print(f"data: {report.summary()}")
                for folder in report.left_out:
                    console.print(path_text(f"note: left out {folder.path}: {folder.reason}"), markup=False,
                                  highlight=False)
                for line in report.notes:
                    console.print(path_text(f"note: {line}"), markup=False, highlight=False)
                for skipped in report.skipped[:SKIPS_SHOWN]:
                    console.print(
                        path_text(f"warning: skipped {skipped.path}: {skipped.reason}"), markup=False, highlight=False
                    )
                if len(report.skipped) > SKIPS_SHOWN:
                    more = len(report.skipped) - SKIPS_SHOWN
                    console.print(f"warning: … and {more:,} more files skipped (the run's log.jsonl lists each)",
                                  markup=False, highlight=False)
            elif event.kind == "start":
                console.print(path_text(event.message), markup=False, highlight=False)
                bar("training", event.step, event.total)
            elif event.kind == "step" and event.values:
                v = event.values
                count = len(f"{event.total}/{event.total}")
                bar("training", event.step, event.total, loss_text(v, console.width - _BAR_LINE - count))
                if not fancy and pace.due(event.step / max(event.total, 1), bars.get_time()):
                    # a line of its own: its full text, and the time left the bar would show
                    left = eta(next(task for task in bars.tasks if task.id == tasks["training"]))
                    console.print(
                        f"step {event.step}/{event.total}  {loss_text(v)}  {v['clips_per_s']:.1f} clips/s{left}",
                        highlight=False,
                    )
            elif event.kind == "step":
                bar("training", event.step, event.total)
            elif event.kind == "note":
                console.print(path_text(event.message), markup=False, highlight=False)

        yield show
