"""The flow soundtrack and animate share: one modality of a user's file in, the other made to match it,
for any length. Which modality is given is data (`given`), never a branch."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mmgen.diffusion import step_count
from mmgen.media import read_audio, read_video
from mmgen.media.decode import within_full_scale
from mmgen.media.remux import check_kept
from mmgen.pipelines import outputs
from mmgen.pipelines.clips import Clip, Provenance, Result
from mmgen.pipelines.events import ProgressEvent, ProgressFn, quiet
from mmgen.pipelines.outputs import OutputPaths
from mmgen.pipelines.preflight import OTHER, Matching
from mmgen.pipelines.sampling import clip_generators, upscale_steps, window_sampler
from mmgen.pipelines.sampling import upscale as upscale_video
from mmgen.pipelines.session import Models, Run, load, prepare
from mmgen.pipelines.settings import MatchingSettings
from mmgen.pipelines.windows import generate_continuous, plan_windows, tracks_for

# Writes the result's files from the input (which keeps its own stream of the given modality); returns
# what to add to the sidecar (e.g. how the sound was delivered).
Writer = Callable[[Result, OutputPaths], "dict | None"]
# Makes the Writer for an input once the model's sample rate is known, before any sampling: what it reads from
# the input (the sound to mix in) is read, and so checked, before the wait, not after it. Its third argument is where
# the given stream starts on the input's timeline (seconds from its origin): the output's 0.
WriterFor = Callable[[Path, int, float], Writer]


def read_input(path: Path, given: str, models: Models, start: float) -> torch.Tensor:
    """The input's `given` stream from `start` (where it starts: check_input) at the model's rate (and frame size),
    batched: video (1, T, 3, H, W) or audio (1, 1, N)."""
    config = models.base.config
    if given == "video":
        return read_video(path, config.fps, tuple(config.video_size[2:]), start=start)[None]
    return within_full_scale(read_audio(path, config.sample_rate, start=start, heard_by_model=True), path)[None]


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
    windows = plan_windows(total, frames, overlap)
    lengths = {"video": math.ceil(seconds * config.fps - 1e-6), "audio": round(seconds * config.sample_rate)}
    upscaling = make == "video" and models.upsampler is not None
    (generator,) = clip_generators([run.seed])  # the windows' noise, then the upscaling's, as generate's clips draw
    if upscaling:  # a later stage, often longer than the windows on a CPU: its bar from the start, its steps counted
        upscaled = min(lengths["video"], windows[-1].start + frames)  # on from the windows' in one total: one ETA
        progress(ProgressEvent("windows", 0, len(windows)))
        progress(ProgressEvent("upscale", 0, upscaled))
        sampler = window_sampler(run, models.base, progress, len(windows), upscale_steps(models.upsampler, 1, upscaled),
                                 generator=generator)
    else:
        sampler = window_sampler(run, models.base, progress, generator=generator)
    made = generate_continuous(sampler, {given: source}, make, tracks, frames, total, overlap, progress)  # (1, …)
    pair = {given: source, make: made}
    pair = {k: v.narrow(tracks[k].axis, 0, min(lengths[k], v.shape[tracks[k].axis])) for k, v in pair.items()}
    if upscaling:
        pair["video"] = upscale_video(run, models.upsampler, pair["video"], [generator], progress,
                                      steps_before=len(windows) * step_count(run.sampling))
    clip = Clip.sampled(pair["video"][0], pair["audio"][0], config.fps, config.sample_rate)
    return clip, len(windows)


def run_conditional(
    checked: Matching,
    writer_for: WriterFor,
    settings: MatchingSettings,
    *,
    overwrite: bool = False,
    progress: ProgressFn = quiet,
    mix: float | None = None,
) -> Result:
    """Once `checked` (preflight.check_matching: the input, the outputs, the model), load the model, make the other
    modality for the input, write it to the output (and the files `settings` add beside it) with the writer
    `writer_for` makes. `mix` is recorded in the sidecar.
    The made stream covers the given one as a player plays it: from where the given stream starts (a sound delayed
    behind a picture, a picture behind its sound), which is the output's 0, for as long as it lasts."""
    source_path, paths, inputs = checked.source, checked.paths, checked.inputs
    given, start, seconds = settings.given, checked.start, checked.seconds
    check_kept(source_path, settings.kept, paths.mp4)
    run = prepare(settings)
    models = load(run)
    started = time.perf_counter()
    source = read_input(source_path, given, models, start)
    if given == "audio":  # as long as the sound decodes: a header may count samples the decoder drops (Ogg Opus's
        seconds = source.shape[-1] / models.base.config.sample_rate  # pre-skip), or padding read_audio trims
    write = writer_for(source_path, models.base.config.sample_rate, start)
    clip, windows = make_matching(run, models, source, given, seconds, settings.overlap, progress)
    provenance = Provenance.matching(run, models, time.perf_counter() - started, settings.overlap, windows,
                                     source_path, mix=mix)
    result = Result(clip, provenance)
    with outputs.new_folders_removed_on_failure([paths]), outputs.writing(paths, overwrite, inputs):  # all, or none
        extra = write(result, paths) or {}
        result = dataclasses.replace(result, provenance=dataclasses.replace(provenance, **extra))
        return outputs.finish(result, paths, overwrite)
