"""Generate new clips — video and its sound together — from noise."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mmgen.calls import pipeline_call
from mmgen.diffusion import step_count
from mmgen.media import contact_sheet_png, spectrogram_png, write_mp4
from mmgen.media.containers import container_for, kept_rate
from mmgen.media.deliver import as_encoded, deliver
from mmgen.media.delivery import Delivery
from mmgen.pipelines import outputs
from mmgen.pipelines.arguments import check_arguments
from mmgen.pipelines.clips import Clip, Provenance, Result
from mmgen.pipelines.events import ProgressEvent, ProgressFn, quiet
from mmgen.pipelines.preflight import check_generate
from mmgen.pipelines.sampling import batch_noise, clip_generators, sample_clips, upscale, upscale_steps
from mmgen.pipelines.session import Models, Run, load, prepare
from mmgen.pipelines.settings import GenerateSettings


def iter_generate(run: Run, models: Models, num: int, batch_size: int = 1, progress: ProgressFn = quiet
                  ) -> Iterator[Result]:
    """Clips 0..num-1 of `run`, a batch at a time; clip k comes from seed run.seed + k, the same clip in any batch
    within float rounding (a batched convolution rounds otherwise: ~1e-5, not bitwise; the sound's encoder can make
    that audible), so the sidecar records `batch_size` beside the seed."""
    if num < 1 or batch_size < 1:
        raise ValueError("num and batch_size must be at least 1")
    base = models.base
    progress(ProgressEvent("clips", 0, num))
    for first in range(0, num, batch_size):
        started = time.perf_counter()
        seeds = [run.seed + k for k in range(first, min(first + batch_size, num))]
        generators = clip_generators(seeds)
        x_T = batch_noise(base, generators)
        # one count of steps for the batch, its upscaling's too: a step line's ETA is the clips' whole time
        upscaling = 0 if models.upsampler is None else upscale_steps(models.upsampler, len(seeds), base.config.frames)
        out = sample_clips(run, base, x_T, generator=generators, progress=progress, then_steps=upscaling)
        video = out["video"]  # (B, F, 3, H, W)
        if models.upsampler is not None:
            video = upscale(run, models.upsampler, video, generators, progress, steps_before=step_count(run.sampling))
        seconds = (time.perf_counter() - started) / len(seeds)  # wall time per clip of this batch
        for b, seed in enumerate(seeds):
            clip = Clip.sampled(video[b], out["audio"][b], base.config.fps, base.config.sample_rate)
            yield Result(clip, Provenance.of(run, models, seed, seconds, batch_size=batch_size))
        progress(ProgressEvent("clips", first + len(seeds), num))


@pipeline_call
def generate(settings: GenerateSettings = GenerateSettings(), *, batch_size: int = 1, progress: ProgressFn = quiet
             ) -> list[Result]:
    """Generate `settings.num` clips in memory (nothing is written). Clip k is reproducible from seed + k."""
    batch_size = check_arguments("generate", settings, GenerateSettings, batch_size=batch_size, progress=progress)
    run = prepare(settings)
    return list(iter_generate(run, load(run), settings.num, batch_size, progress))


@pipeline_call(output="out_dir")
def generate_files(
    out_dir: str | Path = ".",
    settings: GenerateSettings = GenerateSettings(),
    *,
    batch_size: int = 1,
    overwrite: bool = False,
    progress: ProgressFn = quiet,
) -> list[Result]:
    """Generate `settings.num` clips into OUT_DIR/clip_0000.mp4 … with a sidecar .json each (and _frames.png /
    _spectrogram.png previews). Every name is checked first; each clip is written as soon as it is made."""
    batch_size = check_arguments("generate_files", settings, GenerateSettings, paths={"out_dir": out_dir},
                                 batch_size=batch_size, overwrite=overwrite, progress=progress)
    paths, inputs = check_generate(out_dir, settings, overwrite=overwrite)
    run = prepare(settings)
    models = load(run)
    results = []
    # one rate for every clip (all mp4s), noted once where the mp4 cannot store the model's own (`model`)
    delivery = kept_rate(settings.delivery(), paths[0].mp4, models.base.config.sample_rate, "the model's")
    with outputs.new_folders_removed_on_failure(paths):
        for result, where in zip(iter_generate(run, models, settings.num, batch_size, progress), paths, strict=True):
            results.append(write_generated(result, where, overwrite, delivery, inputs))
    return results


def write_generated(
    result: Result,
    where: outputs.OutputPaths,
    overwrite: bool = False,
    delivery: Delivery = Delivery(),
    inputs: Sequence[Path] = (),
) -> Result:
    """Write a generated clip: the mp4 (its sound as `delivery` says), the previews `where` names (if any, of the
    model's own sound), then its sidecar: all of them, or none if one cannot be written. `inputs`: the files the
    run reads (its model, upsampler and adapters: preflight.input_files), never removed as an old output's files."""
    clip = result.clip
    delivered = deliver(clip.audio, clip.sample_rate, kept_rate(delivery, where.mp4, clip.sample_rate, "the model's"))
    delivered = as_encoded(delivered, container_for(where.mp4).audio_encoder)
    with outputs.writing(where, overwrite, inputs):
        write_mp4(where.mp4, clip.video, delivered.audio, clip.fps, delivered.sample_rate, overwrite=overwrite)
        result = dataclasses.replace(
            result, provenance=dataclasses.replace(result.provenance, delivery=delivered.to_json())
        )
        if "frames_png" in where.files:
            contact_sheet_png(where.files["frames_png"], clip.video, overwrite=overwrite)
            spectrogram_png(where.files["spectrogram_png"], clip.audio, clip.sample_rate, overwrite=overwrite)
        return outputs.finish(result, where, overwrite)
