"""Give a video a soundtrack: audio made to match its picture, any length, under the ORIGINAL video stream
(copied, not re-encoded)."""

from __future__ import annotations

from pathlib import Path

from mmgen.media import replace_audio, write_wav
from mmgen.pipelines import outputs
from mmgen.pipelines.clips import Result
from mmgen.pipelines.conditional import run_conditional
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.settings import SoundtrackSettings


def soundtrack(
    input: str | Path, output: str | Path | None = None, settings: SoundtrackSettings = SoundtrackSettings(),
    *, overwrite: bool = False, progress: ProgressFn = quiet,
) -> Result:
    """Write OUTPUT (default INPUT_soundtrack.mp4): the input's video stream plus generated audio lasting
    exactly as long, blended with the input's own audio by `settings.mix` (0: only the new audio). With
    `settings.wav` also the new audio (before mixing) as OUTPUT.wav. Returns the result with its sidecar written."""

    def write(result: Result, source: Path, paths: OutputPaths) -> None:
        clip = result.clip
        replace_audio(source, clip.audio, clip.sample_rate, paths.mp4, mix=settings.mix, overwrite=overwrite)
        if settings.wav:
            write_wav(paths.files["wav"], clip.audio, clip.sample_rate, overwrite=overwrite)

    output = Path(output) if output else outputs.default_output(input, "soundtrack")
    return run_conditional(input, output, write, settings, overwrite=overwrite, progress=progress, mix=settings.mix)
