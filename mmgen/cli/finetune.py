"""`mmgen finetune`: train on a folder of your own clips. Parsing and printing only; the work is mmgen.train.

Examples:
    mmgen finetune my_clips/ --from demo -o runs/mine --steps 2000
    mmgen finetune world/ --scratch --config presets/demo-train.yaml -o runs/demo
    mmgen finetune my_clips/ -o runs/mine --resume            # after Ctrl-C, a crash, or to train longer
    torchrun --nproc_per_node 4 -m mmgen finetune my_clips/ --from landscape -o runs/big
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mmgen.cli.app import app
from mmgen.errors import UsageError

_MODEL = "Model"
_TRAINING = "Training"
_DATA = "Data"
_OUTPUT = "Output"
_HARDWARE = "Hardware"


def _opt(panel: str, help: str, *names: str, **kwargs: Any) -> Any:
    return typer.Option(*names, rich_help_panel=panel, help=help, show_default=False, **kwargs)


@app.command()
def finetune(
    data_dir: Annotated[
        Path, typer.Argument(help="Folder of video files with sound (searched recursively).")
    ],
    init: Annotated[
        str | None,
        _opt(
            _MODEL,
            "Model to start from: a registry name (default: demo) or a .safetensors written by mmgen.",
            "--from",
            metavar="MODEL",
        ),
    ] = None,
    scratch: Annotated[
        bool,
        _opt(
            _MODEL,
            "Train a new model from random weights; the architecture comes "
            "from the `model:` section of --config.",
            "--scratch",
        ),
    ] = False,
    config_file: Annotated[
        Path | None,
        _opt(
            _MODEL,
            "YAML file of settings (any option below, plus `model:` for --scratch); flags override it.",
            "--config",
            metavar="FILE.yaml",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        _opt(
            _OUTPUT,
            "Run folder for config, log, checkpoints, samples and the "
            "final model. Default: runs/finetune-<date>-<time>.",
            "--output",
            "-o",
            metavar="RUN_DIR",
        ),
    ] = None,
    resume: Annotated[
        bool,
        _opt(
            _OUTPUT,
            "Continue the run in -o from its newest checkpoint (its settings, "
            "overridden by any flags given now, e.g. a larger --steps).",
            "--resume",
        ),
    ] = False,
    steps: Annotated[int | None, _opt(_TRAINING, "Optimizer steps in total [default: 1000].", min=1)] = None,
    batch_size: Annotated[
        int | None, _opt(_TRAINING, "Clips per step, over all processes [default: 8].", min=1)
    ] = None,
    lr: Annotated[float | None, _opt(_TRAINING, "Peak learning rate [default: 1e-4].", min=0.0)] = None,
    warmup: Annotated[
        int | None, _opt(_TRAINING, "Steps of linear learning-rate warm-up [default: 0].", min=0)
    ] = None,
    ema_decay: Annotated[
        float | None,
        _opt(
            _TRAINING,
            "Decay of the weights' moving average that becomes the "
            "final model [default: 0.9999; use ~0.999 for short runs].",
        ),
    ] = None,
    grad_clip: Annotated[
        float | None, _opt(_TRAINING, "Clip the gradient norm to this [default: 1.0].", min=0.0)
    ] = None,
    loss_weights: Annotated[
        str | None,
        _opt(
            _TRAINING,
            "Weights of the two losses, e.g. video=1,audio=2 [default: 1 each].",
            metavar="video=W,audio=W",
        ),
    ] = None,
    timesteps: Annotated[
        Literal["shared", "independent"] | None,
        _opt(_TRAINING, "shared: one noise level per clip (the paper); independent: the audio gets its own."),
    ] = None,
    seed: Annotated[
        int | None, _opt(_TRAINING, "Seed for initialisation, data order and noise [default: 0].", min=0)
    ] = None,
    stride: Annotated[
        int | None,
        _opt(
            _DATA,
            "Frames between the starts of consecutive clips cut from a file "
            "[default: the clip length, no overlap].",
            min=1,
        ),
    ] = None,
    flip: Annotated[
        bool | None, _opt(_DATA, "Randomly mirror the video left-right [default: on].", "--flip/--no-flip")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        _opt(_DATA, "Where decoded clips are kept [default: <mmgen cache>/clips].", metavar="DIR"),
    ] = None,
    num_workers: Annotated[int | None, _opt(_DATA, "Data loader processes [default: 0].", min=0)] = None,
    save_every: Annotated[
        int | None, _opt(_OUTPUT, "Steps between checkpoints [default: 500].", min=0)
    ] = None,
    sample_every: Annotated[
        int | None,
        _opt(_OUTPUT, "Steps between preview clips in RUN/samples, 0 for none [default: 500].", min=0),
    ] = None,
    probe_every: Annotated[
        int | None,
        _opt(
            _OUTPUT,
            "Steps between audio-visual probes (the av_gap in the log) [default: as --sample-every].",
            min=0,
        ),
    ] = None,
    device: Annotated[
        str | None,
        _opt(
            _HARDWARE,
            "Where to run: auto picks cuda, then mps, then cpu; under "
            "torchrun each process takes its own GPU [default: auto].",
            metavar="auto|cpu|cuda|cuda:N|mps",
        ),
    ] = None,
    precision: Annotated[
        Literal["auto", "fp32", "fp16", "bf16"] | None,
        _opt(_HARDWARE, "auto: bf16 (or fp16) autocast on CUDA, fp32 elsewhere."),
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        _opt(
            _HARDWARE,
            "Recompute activations in the backward pass: less memory, ~30% slower.",
            "--gradient-checkpointing/--no-gradient-checkpointing",
        ),
    ] = None,
) -> None:
    """Fine-tune a model (or train one from scratch) on your own clips.

    Every file is cut into model-length clips, decoded once into a cache, and trained on with the paper's
    objective. Ctrl-C saves a checkpoint and prints the command that resumes. The result,
    RUN_DIR/model.safetensors, works with `mmgen generate -m RUN_DIR/model.safetensors`.
    """
    from mmgen.train import finetune as run_finetune
    from mmgen.train import resolve_config
    from mmgen.train.config import load_layer

    if init is not None and scratch:
        raise UsageError("--from and --scratch exclude each other")
    if resume and (init is not None or scratch):
        raise UsageError("--resume continues the run's own model; drop --from/--scratch")
    if resume and output is None:
        raise UsageError("--resume needs -o RUN_DIR: the run to continue")
    run_dir = output or Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")

    layers = []
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(f"{run_dir}: no config.yaml here: not an mmgen finetune run folder")
        layers.append(load_layer(run_dir / "config.yaml"))
    if config_file is not None:
        layers.append(load_layer(config_file))
    flags = {
        "init": init,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "ema_decay": ema_decay,
        "grad_clip": grad_clip,
        "timesteps": timesteps,
        "seed": seed,
        "stride": stride,
        "flip": flip,
        "cache_dir": cache_dir and str(cache_dir),
        "num_workers": num_workers,
        "save_every": save_every,
        "sample_every": sample_every,
        "probe_every": probe_every,
        "device": device,
        "precision": precision,
        "gradient_checkpointing": gradient_checkpointing,
        "loss_weights": _parse_loss_weights(loss_weights) if loss_weights is not None else None,
    }
    layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    config = resolve_config(layers, scratch=scratch)

    console = Console(stderr=True, soft_wrap=True)  # a skipped file's path and reason stay on one line
    main_process = int(os.environ.get("RANK", "0")) == 0
    with _display(console if main_process else None) as on_event:
        result = run_finetune(data_dir, run_dir, config, resume=resume, on_event=on_event)
    if not main_process:
        return
    if result.interrupted:
        _say(f"stopped at step {result.step}/{config.steps}; checkpoint saved in {run_dir}/checkpoints")
        where = f"{shlex.quote(str(data_dir))} -o {shlex.quote(str(run_dir))}"
        _say(f"resume with:  {_launcher()} finetune {where} --resume")
    else:
        _say(f"done: {result.step} steps; model {result.model_path}")
        _say(f"try:  mmgen generate -m {shlex.quote(str(result.model_path))}")


def _parse_loss_weights(text: str) -> dict[str, float]:
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--loss-weights: {part!r} is not NAME=NUMBER (e.g. video=1,audio=2)") from None
    return weights


def _launcher() -> str:
    """How to start this run again: plain `mmgen`, or torchrun with the same processes per node. torchrun runs
    its workers in their own sessions, so Ctrl-C reaches torchrun alone, which passes one SIGINT to each worker:
    they save and exit, then torchrun reports the signal. One node: --standalone (a free local port). Several:
    the job's own rendezvous options, which a worker cannot see, go where the placeholder is."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or world)
    if world <= 1:
        return "mmgen"
    if per_node >= world:
        return f"torchrun --standalone --nproc_per_node {per_node} -m mmgen"
    return f"torchrun --nnodes {world // per_node} --nproc_per_node {per_node} <rendezvous options> -m mmgen"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def _display(console: Console | None):
    """The trainer's event callback: rich bars (decoding, then steps with loss and ETA) on a terminal, plain
    lines at each log step otherwise; nothing on the other processes of a torchrun job."""
    from mmgen.train import TrainEvent

    if console is None:
        yield None
        return
    fancy = console.is_terminal
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=not fancy) as bars:
        tasks: dict[str, Any] = {}

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
                for skipped in report.skipped:
                    console.print(
                        f"warning: skipped {skipped.path}: {skipped.reason}", markup=False, highlight=False
                    )
            elif event.kind == "start":
                console.print(event.message, markup=False, highlight=False)
                bar("training", event.step, event.total)
            elif event.kind == "step" and event.values:
                v = event.values
                info = f"loss {v['loss']:.4f} (video {v['loss_video']:.4f}, audio {v['loss_audio']:.4f})"
                bar("training", event.step, event.total, info)
                if not fancy:
                    console.print(
                        f"step {event.step}/{event.total}  {info}  {v['clips_per_s']:.1f} clips/s",
                        highlight=False,
                    )
            elif event.kind == "step":
                bar("training", event.step, event.total)
            elif event.kind == "note":
                console.print(event.message, markup=False, highlight=False)

        yield show
