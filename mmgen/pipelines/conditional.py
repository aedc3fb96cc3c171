"""The flow soundtrack and animate share: one modality of a user's file in, the other made to match it,
for any length. Which modality is given is data (`given`), never a branch."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mmgen.errors import MediaError
from mmgen.media import MediaInfo, probe, read_audio, read_video
from mmgen.media.decode import MAX_CHANNELS
from mmgen.media.remux import check_kept
from mmgen.pipelines import outputs
from mmgen.pipelines.clips import Clip, Provenance, Result
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.sampling import upscale as upscale_video
from mmgen.pipelines.sampling import window_sampler
from mmgen.pipelines.session import Models, Run, input_files, load, prepare
from mmgen.pipelines.settings import MatchingSettings
from mmgen.pipelines.windows import generate_continuous, plan_windows, tracks_for

OTHER = {"video": "audio", "audio": "video"}
# The shortest input (either stream) and the lowest sound sample rate read: below them the sound, at the model's rate
# or the delivered one, would be empty (a clip of 2 frames at 1,000,000 fps) or cut short (libswresample gives
# nothing of a few samples at a time, or of a sound at a few Hz), met after all the sampling as a ValueError.
MIN_SECONDS = 0.01
MIN_INPUT_RATE = 4_000  # Hz
STILL_CODECS = {"png", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp", "gif", "ppm", "pgm", "qoi"}
# Writes the result's files from the input (which keeps its own stream of the given modality); returns
# what to add to the sidecar (e.g. how the sound was delivered).
Writer = Callable[[Result, OutputPaths], "dict | None"]
# Makes the Writer for an input once the model's sample rate is known, before any sampling: what it reads from
# the input (the sound to mix in) is read, and so checked, before the wait, not after it. Its third argument is where
# the given stream starts on the input's timeline (seconds from its origin): the output's 0.
WriterFor = Callable[[Path, int, float], Writer]


def check_input(path: Path, given: str) -> tuple[float, float]:
    """Fail fast on an input without a usable `given` stream; returns where that stream starts on the input's
    timeline (seconds from its origin: a sound 0.5 s behind its picture starts at 0.5) and how long it lasts."""
    info = probe(path)
    if not getattr(info, f"has_{given}"):
        raise MediaError(f"cannot read {path}: it has no {given} stream")
    check_sound(info, given)
    duration = info.video_duration if given == "video" else info.audio_duration
    duration = info.duration if duration is None else duration
    if given == "video" and (info.frames or 0) <= 1 and info.video_codec in STILL_CODECS:
        raise MediaError(f"cannot read {path}: it is a still image ({info.video_codec}), not a video")
    if duration <= 0 or (given == "video" and info.frames == 0):
        raise MediaError(f"cannot read {path}: its {given} stream is empty")
    check_length(info, given, duration)
    return getattr(info, f"{given}_start"), duration


def check_sound(info: MediaInfo, given: str) -> None:
    """An input's sound (`given` "audio") sampled below MIN_INPUT_RATE, or of more than MAX_CHANNELS channels (which
    FFmpeg's resampler cannot mix to mono), is refused before any work."""
    if given != "audio":
        return
    if info.sample_rate is not None and info.sample_rate < MIN_INPUT_RATE:
        raise MediaError(f"cannot read {info.path}: its audio is sampled at {info.sample_rate:,} Hz, out of range "
                         f"(mmgen reads sound sampled at {MIN_INPUT_RATE:,} Hz or more)")
    if (info.audio_channels or 0) > MAX_CHANNELS:
        raise MediaError(f"cannot read {info.path}: its audio has {info.audio_channels} channels, more than the "
                         f"{MAX_CHANNELS} FFmpeg's resampler mixes to mono")


def check_length(info: MediaInfo, given: str, duration: float) -> None:
    """An input whose `given` stream lasts `duration` s, under MIN_SECONDS, is refused before any work."""
    if duration < MIN_SECONDS:
        raise MediaError(f"cannot read {info.path}: its {given} lasts {duration * 1000:.3g} ms, too short to hold any "
                         f"sound (mmgen needs {MIN_SECONDS * 1000:g} ms or more)")


def read_input(path: Path, given: str, models: Models, start: float) -> torch.Tensor:
    """The input's `given` stream from `start` (where it starts: check_input) at the model's rate (and frame size),
    batched: video (1, T, 3, H, W) or audio (1, 1, N)."""
    config = models.base.config
    if given == "video":
        return read_video(path, config.fps, tuple(config.video_size[2:]), start=start)[None]
    return read_audio(path, config.sample_rate, start=start)[None]


def make_matching(
    run: Run, models: Models, source: torch.Tensor, given: str, seconds: float, overlap: float,
    progress: ProgressFn = quiet,
) -> tuple[Clip, int]:
    """The clip pairing `source` (the `given` modality, batched, at the model's rate) with a generated
    other modality of exactly `seconds` (audio to the sample, video to the frame), and the number of
    windows it took."""
    config = models.base.config
    frames, samples = config.frames, config.audio_length
    tracks = tracks_for(frames, samples)
    make = OTHER[given]
    total = math.ceil(source.shape[tracks[given].axis] / tracks[given].per_frame)  # model frames of the input
    sampler = window_sampler(run, models.base, progress)
    made = generate_continuous(sampler, {given: source}, make, tracks, frames, total, overlap, progress)  # (1, …)
    lengths = {"video": math.ceil(seconds * config.fps - 1e-6), "audio": round(seconds * config.sample_rate)}
    pair = {given: source, make: made}
    pair = {k: v.narrow(tracks[k].axis, 0, min(lengths[k], v.shape[tracks[k].axis])) for k, v in pair.items()}
    if make == "video" and models.upsampler is not None:
        pair["video"] = upscale_video(run, models.upsampler, pair["video"], [run.seed], progress)
    clip = Clip.sampled(pair["video"][0], pair["audio"][0], config.fps, config.sample_rate)
    return clip, len(plan_windows(total, frames, overlap))


def run_conditional(
    input: str | Path,
    output: Path,
    writer_for: WriterFor,
    settings: MatchingSettings,
    *,
    overwrite: bool = False,
    progress: ProgressFn = quiet,
    mix: float | None = None,
    inputs: Sequence[Path] = (),
) -> Result:
    """Check everything, load the model, make the other modality for `input`, write it to `output` (and the
    files `settings` add beside it) with the writer `writer_for` makes. `mix` is recorded in the sidecar.
    The made stream covers the given one as a player plays it: from where the given stream starts (a sound delayed
    behind a picture, a picture behind its sound), which is the output's 0, for as long as it lasts.
    `inputs`: more files read while it runs (a batch's other jobs'), kept like its own: never an output's file."""
    source_path = Path(input)
    given = settings.given
    start, seconds = check_input(source_path, given)
    for stream in settings.streams():
        if stream != given:
            check_input(source_path, stream)
    paths = settings.outputs(output)
    inputs = [source_path, *input_files(settings), *inputs]
    outputs.check_outputs([paths], overwrite, inputs=inputs, sample_rate=settings.asked_rate())
    check_kept(source_path, settings.kept, paths.mp4)
    run = prepare(settings)
    models = load(run)
    started = time.perf_counter()
    source = read_input(source_path, given, models, start)
    if given == "audio":  # as long as the sound decodes: a header may count samples the decoder drops (Ogg Opus's
        seconds = source.shape[-1] / models.base.config.sample_rate  # pre-skip), or padding read_audio trims
    write = writer_for(source_path, models.base.config.sample_rate, start)
    clip, windows = make_matching(run, models, source, given, seconds, settings.overlap, progress)
    provenance = Provenance.of(
        run,
        models,
        run.seed,
        time.perf_counter() - started,
        guidance=run.sampling.guidance,
        guidance_scale=run.sampling.guidance_scale if run.sampling.guidance == "gradient" else None,
        overlap=settings.overlap,
        windows=windows,
        input=str(source_path),
        mix=mix,
    )
    result = Result(clip, provenance)
    with outputs.new_folders_removed_on_failure([paths]), outputs.writing(paths, overwrite, inputs):  # all, or none
        extra = write(result, paths) or {}
        result = dataclasses.replace(result, provenance=dataclasses.replace(provenance, **extra))
        return outputs.finish(result, paths, overwrite)
