"""`mmgen finetune`: train on a folder of your own clips. Parsing and printing only; the work is mmgen.train.

Every training option is named after its field in mmgen.train.FinetuneConfig and defaults to it; only the
options given on the command line are laid over the run's settings (train.config.run_config), so with --resume
a flag changes one setting of the run and leaves the others as they were.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from mmgen.cli._finetune_display import display, main_process, report, result_json, resumable, stopped_json
from mmgen.cli._results import print_json
from mmgen.cli.app import app
from mmgen.cli.options import a_number, stdout_open, whole_number
from mmgen.config import ConfigProblems
from mmgen.errors import MmgenError, UsageError, alike_in_every_process
from mmgen.presets import training_recipes
from mmgen.runtime import torchrun
from mmgen.terminal import say as say_line
from mmgen.train.config import LIMITS, FinetuneConfig, parse_loss_weights

_MODEL, _TRAINING, _DATA, _OUTPUT, _HARDWARE = "Model", "Training", "Data", "Output", "Hardware"
DEFAULT = FinetuneConfig()


@app.command(
    epilog="Examples:  `mmgen finetune my_clips/ --from demo -o runs/mine --steps 2000`,  `"
    "mmgen finetune world/ --scratch --config demo-train -o runs/demo`,  `"
    "mmgen finetune my_clips/ --from demo --lora 8 -o runs/style`,  `"
    "mmgen finetune my_clips/ -o runs/mine --resume`,  `"
    "torchrun --nproc_per_node 4 -m mmgen finetune my_clips/ --from landscape -o runs/big`"
)
def finetune(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Argument(help="Folder of video files with sound (searched recursively).")],
    init: Annotated[
        str | None,
        typer.Option("--from", metavar="MODEL", rich_help_panel=_MODEL, show_default="demo",
                     help="Model to start from: a registry name or a .safetensors written by mmgen."),
    ] = None,
    scratch: Annotated[
        bool,
        typer.Option("--scratch", rich_help_panel=_MODEL,
                     help="Train a new model from random weights; the architecture comes from the `model:` section "
                     "of --config."),
    ] = False,
    config_file: Annotated[
        str | None,  # as typed: `./demo-train` is a path, `demo-train` a packaged recipe (presets.config_path)
        typer.Option("--config", metavar="FILE.yaml", rich_help_panel=_MODEL,
                     help="YAML file of settings (any option below, plus `model:` for --scratch); flags override it. "
                     "Relative paths in it (init, cache_dir) are read from its folder. A bare name is a packaged "
                     f"recipe: {', '.join(training_recipes())}. `./NAME` is the file here."),
    ] = None,
    lora_rank: Annotated[
        int | None,
        typer.Option("--lora", metavar="RANK", min=1, parser=whole_number, rich_help_panel=_MODEL, show_default="off: the whole model",
                     help="Train low-rank adapters of this rank over the frozen --from model; the result is a small "
                     "adapter.safetensors in RUN_DIR, to use with `mmgen generate --adapter` (soundtrack, animate, retake alike)."),
    ] = None,
    lora_alpha: Annotated[
        float | None,
        typer.Option("--lora-alpha", metavar="A", parser=a_number, rich_help_panel=_MODEL, show_default="the rank",
                     help="Adapter scale numerator, a positive number: the adapters add (A / RANK) * B*A to each weight."),
    ] = None,
    lora_targets: Annotated[
        Literal["attention", "attention+conv", "all"] | None,
        typer.Option("--lora-targets", metavar="LAYERS", rich_help_panel=_MODEL, show_default="attention+conv",
                     help="Layers that get adapters: attention (self- and cross-modal q/k/v and projections), "
                     "attention+conv (also the residual blocks' convolutions), or all weights."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="RUN_DIR", rich_help_panel=_OUTPUT,
                     show_default="runs/finetune-<date>-<time>",
                     help="Run folder for config, log, checkpoints, samples and the final model."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", rich_help_panel=_OUTPUT,
                     help="Continue the run in -o from its newest checkpoint (its settings, overridden by any "
                     "flags given now, e.g. a larger --steps)."),
    ] = False,
    steps: Annotated[int, typer.Option(metavar="STEPS", min=1, parser=whole_number, rich_help_panel=_TRAINING, help="Optimizer steps in total.")
                     ] = DEFAULT.steps,
    batch_size: Annotated[
        int, typer.Option(metavar="CLIPS", min=1, parser=whole_number, rich_help_panel=_TRAINING, help="Clips per step, over all processes.")
    ] = DEFAULT.batch_size,
    lr: Annotated[float, typer.Option(parser=a_number, rich_help_panel=_TRAINING, help="Peak learning rate (a number above 0).")] = DEFAULT.lr,
    warmup: Annotated[
        int, typer.Option(metavar="STEPS", min=0, parser=whole_number, rich_help_panel=_TRAINING, help="Steps of linear learning-rate warm-up.")
    ] = DEFAULT.warmup,
    ema_decay: Annotated[
        float,
        typer.Option(parser=a_number, rich_help_panel=_TRAINING,
                     help="Decay of the weights' moving average that becomes the final model: at least 0 and below 1 "
                     "(0 keeps the last step's weights; use ~0.999 for short runs)."),
    ] = DEFAULT.ema_decay,
    grad_clip: Annotated[
        float, typer.Option(parser=a_number, rich_help_panel=_TRAINING, help="Clip the gradient norm to this, at least 0 (0: no clipping).")
    ] = DEFAULT.grad_clip,
    loss_weights: Annotated[
        str,
        typer.Option(metavar="video=W,audio=W", rich_help_panel=_TRAINING,
                     help="Weights of the two losses, e.g. video=1,audio=2."),
    ] = ",".join(f"{k}={w:g}" for k, w in DEFAULT.loss_weights.items()),
    timesteps: Annotated[
        Literal["shared", "independent"],
        typer.Option(rich_help_panel=_TRAINING,
                     help="shared: one noise level per clip (the paper); independent: the audio gets its own."),
    ] = DEFAULT.timesteps,
    seed: Annotated[
        int, typer.Option(metavar="SEED", min=int(LIMITS["seed"].low), max=int(LIMITS["seed"].high), parser=whole_number,
                          rich_help_panel=_TRAINING, help="Seed for initialisation, data order and noise.")
    ] = DEFAULT.seed,
    stride: Annotated[
        int | None,
        typer.Option(metavar="FRAMES", min=1, parser=whole_number, rich_help_panel=_DATA, show_default="the clip length, no overlap",
                     help="Frames between the starts of consecutive clips cut from a file."),
    ] = None,
    flip: Annotated[
        bool, typer.Option("--flip/--no-flip", rich_help_panel=_DATA, help="Randomly mirror the video left-right.")
    ] = DEFAULT.flip,
    cache_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", rich_help_panel=_DATA, show_default="<mmgen cache>/clips",
                     help="Where decoded clips are kept."),
    ] = None,
    num_workers: Annotated[int, typer.Option(metavar="N", min=0, parser=whole_number, rich_help_panel=_DATA, help="Data loader processes.")
                           ] = DEFAULT.num_workers,
    save_every: Annotated[
        int, typer.Option(metavar="STEPS", min=0, parser=whole_number, rich_help_panel=_OUTPUT, help="Steps between checkpoints, 0 for none but the last (at the end, or on a stop).")
    ] = DEFAULT.save_every,
    sample_every: Annotated[
        int, typer.Option(metavar="STEPS", min=0, parser=whole_number, rich_help_panel=_OUTPUT, help="Steps between preview clips in RUN/samples, 0 for none.")
    ] = DEFAULT.sample_every,
    probe_every: Annotated[
        int | None,
        typer.Option(metavar="STEPS", min=0, parser=whole_number, rich_help_panel=_OUTPUT, show_default="as --sample-every",
                     help="Steps between audio-visual probes (the av_gap in the log), 0 for none."),
    ] = None,
    device: Annotated[
        str,
        typer.Option(metavar="auto|cpu|cuda|cuda:N|mps", rich_help_panel=_HARDWARE,
                     help="Where to run: auto picks cuda, then mps, then cpu; under torchrun each process takes "
                     "its own GPU."),
    ] = DEFAULT.device,
    precision: Annotated[
        Literal["auto", "fp32", "fp16", "bf16"],
        typer.Option(rich_help_panel=_HARDWARE, case_sensitive=False, help="auto: bf16 (or fp16) autocast on CUDA; on CPUs that compute bf16 natively, bf16 for models "
                     "of the paper's width (base width 128 and up) and fp32 for narrower ones such as the demo, "
                     "which train faster in fp32; fp32 elsewhere."),
    ] = DEFAULT.precision,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option("--recompute/--no-recompute", rich_help_panel=_HARDWARE,
                     help="Gradient checkpointing: recompute activations in the backward pass, for less memory, "
                     "~30% slower."),
    ] = DEFAULT.gradient_checkpointing,
    # The flag's first names, still taken: too long for an 80-column --help (its table cut them short), so not shown.
    gradient_checkpointing_named: Annotated[
        bool | None,
        typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", hidden=True,
                     help="--recompute/--no-recompute by the name it had first."),
    ] = None,
    json: Annotated[
        bool,
        typer.Option("--json", rich_help_panel=_OUTPUT, callback=stdout_open,
                     help="Print one JSON object to stdout when the run ends or stops, whenever the stop comes once "
                     "mmgen has read its settings (a stop while mmgen itself loads prints none): run folder, steps "
                     "done, the model or adapter written, the command that resumes. Messages go to stderr."),
    ] = False,
) -> None:
    """Fine-tune a model (or train one from scratch) on your own clips.

    Every file is cut into model-length clips, decoded once into a cache, and trained on with the paper's
    objective. Ctrl-C saves a checkpoint, prints the command that resumes and exits 130. The result,
    RUN_DIR/model.safetensors, works with `mmgen generate -m RUN_DIR/model.safetensors`.
    """
    from mmgen.cli._interrupted import left_behind
    from mmgen.disk_failures import resource_failure
    from mmgen.errors import PeerEnded
    from mmgen.runtime.stop_signals import stop_code, stopped
    from mmgen.train.config_layers import run_config
    from mmgen.train.interrupt import CheckpointNotSaved

    # Under torchrun every process reads the one command line and config file: their refusals are said once (rank 0)
    in_a_job = torchrun.place()[1] > 1
    refusal = config = None
    try:
        with alike_in_every_process():
            if resume and output is None:
                raise UsageError("--resume needs -o RUN_DIR: the run to continue")
            # (each process names its own from its clock; a torchrun job's is rank 0's: train.trainer.run_training)
            run_dir = output or Path("runs") / time.strftime("finetune-%Y%m%d-%H%M%S")
            given = {
                name: value
                for name, value in ctx.params.items()
                if name in FinetuneConfig.__dataclass_fields__ and ctx.get_parameter_source(name).name == "COMMANDLINE"
            }
            if gradient_checkpointing_named is not None:  # one switch by two names: given both ways, neither can win
                if given.get("gradient_checkpointing", gradient_checkpointing_named) != gradient_checkpointing_named:
                    shown, named = (("--recompute", "--no-gradient-checkpointing") if gradient_checkpointing
                                    else ("--no-recompute", "--gradient-checkpointing"))
                    raise UsageError(f"{shown} and {named} contradict each other: give one")
                given["gradient_checkpointing"] = gradient_checkpointing_named
            if "loss_weights" in given:
                given["loss_weights"] = parse_loss_weights(given["loss_weights"])
            try:
                config = run_config(run_dir, resume=resume, scratch=scratch, config_file=config_file, flags=given,
                                    data_dir=data_dir)
            except ConfigProblems as e:  # a file's several refused values: one line each, then the error's own
                if main_process():
                    for line in e.problems:
                        say_line(line)
                raise
    except MmgenError as e:  # said once where every process refused alike; else by rank 0 for the one that did
        if not in_a_job:
            raise
        refusal = e
    if in_a_job:  # each process read its own command line: they must agree before they join (torch loads here)
        from mmgen.train.settings_agreement import agree

        agree(refusal, config, {"-o": output, "DATA_DIR": data_dir})
    with display() as on_event:
        try:
            # torch loads in this call: a run refused above (--resume of no run, of a run in use, a run folder not
            # empty; a config file's mistake) is at once; a stop while it loads (seconds) is one before the first step
            from mmgen.train import finetune as run_finetune

            result = run_finetune(data_dir, run_dir, config, resume=resume, on_event=on_event, _folders_checked=True)
        except (KeyboardInterrupt, Exception) as e:
            # A collective that failed as another process of the job ended (torchrun's SIGTERM to the others then
            # stops them): that, in one line, not gloo's or NCCL's text; with the checkpoints it kept.
            failure = resource_failure(e) if isinstance(e, Exception) else None
            peer = failure if isinstance(failure, PeerEnded) else None
            # A stop outside the loop's "save, then stop" (before the first step has ended, while writing the result;
            # or what a library made of it: stop_signals.stopped), or one whose checkpoint failed: its --json line all
            # the same, saying what is kept; the exit code and last line are the stop's.
            if main_process() and (isinstance(e, (KeyboardInterrupt, CheckpointNotSaved)) or stopped()):
                if json:
                    print_json(stopped_json(run_dir, config, data_dir))
                why = str(e) if isinstance(e, CheckpointNotSaved) else str(peer) if peer else None
                if line := "; ".join(filter(None, [why, resumable(run_dir, data_dir)])):
                    left_behind(line)
            elif peer is not None and (kept := resumable(run_dir, data_dir)):
                raise PeerEnded(f"{peer}; {kept}") from e
            raise
    report(result, config, data_dir)
    if json and main_process():
        print_json(result_json(result, config, data_dir))
    if result.interrupted:  # saved, but not done: a script's `finetune && generate` must not go on
        raise typer.Exit(stop_code())  # 130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP
