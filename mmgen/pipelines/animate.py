"""Animate a sound: video made to match an audio file, any length, muxed with the ORIGINAL audio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmgen.calls import pipeline_call
from mmgen.media import probe, read_audio, replace_video, write_mp4
from mmgen.media.containers import container_for, kept_rate
from mmgen.media.decode import kept_layout
from mmgen.media.deliver import as_encoded, deliver
from mmgen.media.loudness import channel_weights
from mmgen.media.tracks import float_pcm
from mmgen.pipelines.arguments import check_arguments
from mmgen.pipelines.clips import Result
from mmgen.pipelines.conditional import Writer, run_conditional
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.preflight import check_matching
from mmgen.pipelines.settings import AnimateSettings


@pipeline_call
def animate(
    input: str | Path, output: str | Path | None = None, settings: AnimateSettings = AnimateSettings(),
    *, overwrite: bool = False, progress: ProgressFn = quiet, inputs: Sequence[Path] = (),
) -> Result:
    """Write OUTPUT (default INPUT_animate.mp4): generated video as long as the input's audio and starting with it
    (a picture in the input, which is left out, does not count: a sound that started 0.5 s into it starts the
    output), with that audio stream (copied when the output's container can hold it) — or, when the settings name a loudness or a
    sample rate, that audio decoded, brought to them and re-encoded. Returns the result with its sidecar written.
    `inputs`: more files read while it runs (a batch's other jobs'), kept like its own: never an output's file."""
    check_arguments("animate", settings, AnimateSettings, paths={"input": input, "output": output},
                    path_lists={"inputs": inputs}, overwrite=overwrite, progress=progress)

    def writer_for(source: Path, model_rate: int, start: float) -> Writer:
        def write(result: Result, paths: OutputPaths) -> dict | None:
            clip, delivery = result.clip, settings.delivery()
            if delivery.loudness is None and delivery.sample_rate is None:  # the sound as it is: copied
                replace_video(source, clip.video, clip.fps, paths.mp4, overwrite=overwrite, start=start)
                return None
            info = probe(source)
            delivery = kept_rate(delivery, paths.mp4, info.sample_rate, f"{source.name}'s")
            # the user's own sound, as a retake re-encodes it: in its own lossless codec where the output holds it
            # (PCM stays PCM: float PCM keeps peaks past full scale), at its depth; one gain (no limiter reshapes
            # it; a loud sound may stay short of the level); in its own channels where the encoder takes them, else
            # mixed to mono
            rate, encoder = delivery.sample_rate, container_for(paths.mp4).sound_encoder(info.audio_codec)
            kept = kept_layout(source, encoder)
            layout = kept or "mono"
            delivered = deliver(read_audio(source, rate, start=start, layout=kept), rate, delivery, limit=False,
                                weights=channel_weights(layout), held=float_pcm(encoder), overwrite=True)
            delivered = as_encoded(delivered, encoder, layout)
            write_mp4(paths.mp4, clip.video, delivered.audio, clip.fps, rate, overwrite=overwrite, layout=layout,
                      encoder=encoder, bits=info.audio_bits)
            return {"delivery": delivered.to_json()}

        return write

    checked = check_matching("animate", input, output, settings, overwrite=overwrite, inputs=inputs)
    return run_conditional(checked, writer_for, settings, overwrite=overwrite, progress=progress)
