"""Give a video a soundtrack: audio made to match its picture, any length, under the ORIGINAL video stream
(copied, not re-encoded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmgen.calls import pipeline_call
from mmgen.media import read_audio, replace_audio, write_wav
from mmgen.media.containers import container_for, kept_rate
from mmgen.media.deliver import as_encoded, deliver
from mmgen.media.remux import video_end
from mmgen.pipelines.arguments import check_arguments
from mmgen.pipelines.clips import Result
from mmgen.pipelines.conditional import Writer, run_conditional
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.preflight import check_matching
from mmgen.pipelines.settings import SoundtrackSettings


@pipeline_call
def soundtrack(
    input: str | Path, output: str | Path | None = None, settings: SoundtrackSettings = SoundtrackSettings(),
    *, overwrite: bool = False, progress: ProgressFn = quiet, inputs: Sequence[Path] = (),
) -> Result:
    """Write OUTPUT (default INPUT_soundtrack.mp4): the input's video stream plus generated audio lasting
    exactly as long, from the picture's start (the output's 0, whatever the input's sound did before it), blended with the input's own audio by `settings.mix` (0: only the new audio). With
    `settings.wav` also the new audio (before mixing) as OUTPUT.wav; the sound at `settings.delivery()`'s rate and
    loudness (`mix` blends equally loud sounds). Returns the result with its sidecar written.
    `inputs`: more files read while it runs (a batch's other jobs'), kept like its own: never an output's file."""
    check_arguments("soundtrack", settings, SoundtrackSettings, paths={"input": input, "output": output},
                    path_lists={"inputs": inputs}, overwrite=overwrite, progress=progress)

    mix = settings.mix
    checked = check_matching("soundtrack", input, output, settings, overwrite=overwrite, inputs=inputs)
    output = checked.output

    def writer_for(source: Path, model_rate: int, start: float) -> Writer:
        delivery = kept_rate(settings.delivery(), output, model_rate, "the model's")  # one rate, noted once
        own = read_audio(source, delivery.rate(model_rate), start=start) if mix else None  # refused here if unusable

        def write(result: Result, paths: OutputPaths) -> dict:
            clip, seconds = result.clip, video_end(source) - start
            delivered = deliver(clip.audio, clip.sample_rate, delivery, seconds=seconds, own=own, mix=mix)
            delivered = as_encoded(delivered, container_for(paths.mp4).audio_encoder)
            replace_audio(source, delivered.audio, delivered.sample_rate, paths.mp4, overwrite=overwrite, start=start)
            if settings.wav:  # the new sound alone
                alone = deliver(clip.audio, clip.sample_rate, delivery, seconds=seconds) if mix else delivered
                write_wav(paths.files["wav"], alone.audio, alone.sample_rate, overwrite=overwrite)
            return {"delivery": delivered.to_json()}

        return write

    return run_conditional(checked, writer_for, settings, overwrite=overwrite, progress=progress, mix=mix)
