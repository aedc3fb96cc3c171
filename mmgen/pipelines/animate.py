"""Animate a sound: video made to match an audio file, any length, muxed with the ORIGINAL audio."""

from __future__ import annotations

from pathlib import Path

from mmgen.media import replace_video
from mmgen.pipelines import outputs
from mmgen.pipelines.clips import Result
from mmgen.pipelines.conditional import run_conditional
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths


def animate(
    input: str | Path,
    output: str | Path | None = None,
    *,
    model: str = "demo",
    preset: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    guidance: str | None = None,
    guidance_scale: float | None = None,
    overlap: float = 0.25,
    upscale: bool | None = None,
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    progress: ProgressFn = quiet,
) -> Result:
    """Write OUTPUT (default INPUT_animate.mp4): generated video as long as the input's audio, with that
    audio stream (copied when mp4 can hold it). Returns the result with its sidecar written."""
    paths = outputs.beside(Path(output) if output else outputs.default_output(input, "animate"))

    def write(result: Result, source: Path, paths: OutputPaths) -> None:
        clip = result.clip
        replace_video(source, clip.video, clip.fps, paths.mp4, overwrite=overwrite)

    return run_conditional(
        "audio", input, paths, write, model=model, overlap=overlap, overwrite=overwrite, progress=progress,
        preset=preset, sampler=sampler, steps=steps, seed=seed, guidance=guidance,
        guidance_scale=guidance_scale, upscale=upscale, device=device, precision=precision,
    )
