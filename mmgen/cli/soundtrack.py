"""`mmgen soundtrack`: give a video of any length a matching soundtrack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmgen.cli import options
from mmgen.cli._results import report
from mmgen.cli.app import app
from mmgen.cli.progress import progress_display
from mmgen.pipelines import soundtrack as make_soundtrack


@app.command(epilog="Examples:  mmgen soundtrack my_clip.mp4   ·   mmgen soundtrack talk.mov --mix 0.3 --wav -o out.mp4")
def soundtrack(
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="The video to score (any length, any format PyAV reads).")],
    output: options.OutputFile = None,
    model: options.Model = "demo",
    mix: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, rich_help_panel="Output",
                     help="Blend in the input's own audio: 0 only the new soundtrack, 0.5 half each, 1 only the original."),
    ] = 0.0,
    wav: Annotated[
        bool, typer.Option("--wav", rich_help_panel="Output", help="Also write the new audio alone as OUT.wav.")
    ] = False,
    preset: options.Preset = None,
    sampler: options.Sampler = None,
    steps: options.Steps = None,
    seed: options.Seed = None,
    guidance: options.Guidance = None,
    guidance_scale: options.GuidanceScale = None,
    overlap: options.Overlap = 0.25,
    device: options.Device = "auto",
    precision: options.Precision = "auto",
    overwrite: options.Overwrite = False,
    json: options.Json = False,
) -> None:
    """Give a video a soundtrack: new audio that matches its picture, for any length.

    The output keeps the ORIGINAL video stream (copied, not re-encoded) and lasts exactly as long as the input.
    """
    with progress_display() as progress:
        result = make_soundtrack(
            input, output, model=model, preset=preset, sampler=sampler, steps=steps, seed=seed, guidance=guidance,
            guidance_scale=guidance_scale, overlap=overlap, mix=mix, wav=wav, device=device, precision=precision,
            overwrite=overwrite, progress=progress,
        )
    report([result], json)
