"""Give a video a soundtrack: audio made to match its picture, any length, under the ORIGINAL video stream
(copied, not re-encoded)."""

from __future__ import annotations

from pathlib import Path

from mmgen.errors import UsageError
from mmgen.media import replace_audio, write_wav
from mmgen.pipelines import outputs
from mmgen.pipelines.clips import Result
from mmgen.pipelines.conditional import run_conditional
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths


def soundtrack(
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
    mix: float = 0.0,
    wav: bool = False,
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    progress: ProgressFn = quiet,
) -> Result:
    """Write OUTPUT (default INPUT_soundtrack.mp4): the input's video stream plus generated audio lasting
    exactly as long, blended with the input's own audio by `mix` (0: only the new audio). `wav` also
    writes the new audio (before mixing) as OUTPUT.wav. Returns the result with its sidecar written."""
    if not 0.0 <= mix <= 1.0:
        raise UsageError(f"--mix must be between 0 and 1, got {mix}")
    paths = outputs.beside(Path(output) if output else outputs.default_output(input, "soundtrack"), wav=wav)

    def write(result: Result, source: Path, paths: OutputPaths) -> None:
        clip = result.clip
        replace_audio(source, clip.audio, clip.sample_rate, paths.mp4, mix=mix, overwrite=overwrite)
        if wav:
            write_wav(paths.files["wav"], clip.audio, clip.sample_rate, overwrite=overwrite)

    return run_conditional(
        "video", input, paths, write, model=model, overlap=overlap, overwrite=overwrite, mix=mix,
        progress=progress, preset=preset, sampler=sampler, steps=steps, seed=seed, guidance=guidance,
        guidance_scale=guidance_scale, upscale=False, device=device, precision=precision,
    )
