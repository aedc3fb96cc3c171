"""Animate a sound: video made to match an audio file, any length, muxed with the ORIGINAL audio."""

from __future__ import annotations

from pathlib import Path

from mmgen.media import replace_video
from mmgen.pipelines import outputs
from mmgen.pipelines.clips import Result
from mmgen.pipelines.conditional import run_conditional
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.settings import AnimateSettings


def animate(
    input: str | Path, output: str | Path | None = None, settings: AnimateSettings = AnimateSettings(),
    *, overwrite: bool = False, progress: ProgressFn = quiet,
) -> Result:
    """Write OUTPUT (default INPUT_animate.mp4): generated video as long as the input's audio, with that
    audio stream (copied when mp4 can hold it). Returns the result with its sidecar written."""

    def write(result: Result, source: Path, paths: OutputPaths) -> None:
        clip = result.clip
        replace_video(source, clip.video, clip.fps, paths.mp4, overwrite=overwrite)

    output = Path(output) if output else outputs.default_output(input, "animate")
    return run_conditional(input, output, write, settings, overwrite=overwrite, progress=progress)
