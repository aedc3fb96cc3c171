"""Options shared by several commands, defined once. Each mirrors a pipeline keyword argument."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

_SAMPLING = "Sampling"
_HARDWARE = "Hardware"
_OUTPUT = "Output"

Model = Annotated[
    str,
    typer.Option(
        "--model", "-m", metavar="NAME|FILE",
        help="Registry name (see `mmgen models list`) or path to a .safetensors written by mmgen.",
    ),
]
Preset = Annotated[
    str | None,
    typer.Option(
        metavar="NAME", rich_help_panel=_SAMPLING,
        help="Sampling preset: fast, balanced or paper (default: the model's own settings, else balanced). "
        "fast and balanced change the sampler and steps and keep what the model's own settings need (e.g. the "
        "demo's start); paper is the paper's run. --sampler/--steps/--guidance override single fields.",
    ),
]
Sampler = Annotated[
    Literal["dpm++", "ddim", "ddpm", "paper"] | None,
    typer.Option(
        rich_help_panel=_SAMPLING,
        help="dpm++ (DPM-Solver++ 2M, fast), ddim, ddpm (the paper's ancestral sampler, needs many steps) "
        "or paper (the official DPM-Solver run).",
    ),
]
Steps = Annotated[
    int | None,
    typer.Option(min=1, rich_help_panel=_SAMPLING, help="Denoising steps: more is slower and usually cleaner."),
]
Seed = Annotated[
    int | None,
    typer.Option(
        min=0, rich_help_panel=_SAMPLING,
        help="Random seed; the same seed and settings give the same output. Default: a random seed, "
        "printed and written to the sidecar JSON.",
    ),
]
Guidance = Annotated[
    Literal["replacement", "gradient"] | None,
    typer.Option(
        rich_help_panel=_SAMPLING,
        help="How the input steers generation: replacement (fast) or gradient (the paper's, uses "
        "--guidance-scale; about 2x slower).",
    ),
]
GuidanceScale = Annotated[
    float | None,
    typer.Option(min=0.0, rich_help_panel=_SAMPLING, help="Strength λ of gradient guidance."),
]
Overlap = Annotated[
    float,
    typer.Option(
        min=0.0, max=0.75, rich_help_panel=_SAMPLING,
        help="Fraction of each model window shared with the previous one; the new window continues what "
        "the overlap already holds, and the two are crossfaded there.",
    ),
]
Upscale = Annotated[
    bool | None,
    typer.Option(
        "--upscale/--no-upscale", show_default=False, rich_help_panel=_SAMPLING,
        help="Super-resolve video with the model's upsampler (e.g. 64→256). Default: when the upsampler "
        "is available.",
    ),
]
Device = Annotated[
    str,
    typer.Option(metavar="auto|cpu|cuda|cuda:N|mps", rich_help_panel=_HARDWARE,
                 help="Where to run: auto picks cuda, then mps, then cpu."),
]
Precision = Annotated[
    Literal["auto", "fp32", "fp16", "bf16"],
    typer.Option(
        rich_help_panel=_HARDWARE,
        help="Compute precision: auto is bf16 (or fp16) on CUDA, fp16 on MPS, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32.",
    ),
]
OutputFile = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="OUT.mp4", rich_help_panel=_OUTPUT,
                 help="Output file. Default: next to the input, named INPUT_<command>.mp4."),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", rich_help_panel=_OUTPUT, help="Replace existing output files instead of stopping.")
]
Json = Annotated[
    bool,
    typer.Option(
        "--json", rich_help_panel=_OUTPUT,
        help="Print one JSON object per output to stdout (the sidecar's content); messages go to stderr.",
    ),
]
