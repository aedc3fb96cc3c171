"""From a validated Run to samples: the run's model, settings and device handed to the one clip-sampling entry
point (mmgen.diffusion.clips, which also samples training previews), step progress, and the optional per-frame
super-resolution. How seeds and generators work is described there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mmgen.diffusion import SamplingConfig, initial_noise, sample, srunet_denoiser, step_count
from mmgen.diffusion import clips as clip_sampling
from mmgen.diffusion.clips import clip_generators
from mmgen.diffusion.samplers import Generators
from mmgen.errors import MmgenError
from mmgen.modal import Modal, each
from mmgen.pipelines.events import ProgressEvent, ProgressFn, quiet
from mmgen.pipelines.session import Run
from mmgen.pipelines.upsampling import upsampler_sampling
from mmgen.pipelines.windows import SampleWindow
from mmgen.weights import LoadedModel

__all__ = ["batch_noise", "clip_generators", "clip_shapes", "sample_clips", "upsampler_settings", "upscale",
           "upscale_steps", "window_sampler"]

SR_CHUNK = 16  # frames super-resolved per sampler call (one official clip): bounds memory on long videos


def clip_shapes(model: LoadedModel, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """x_T shapes of `batch` clips: video (B, F, C, H, W) then audio (B, 1, L) — the official draw order."""
    return clip_sampling.clip_shapes(model.config, batch)


def batch_noise(model: LoadedModel, generators: Sequence[torch.Generator]) -> Modal:
    """x_T of a batch: each clip's noise from its own generator, stacked."""
    return clip_sampling.batch_noise(model.config, generators)


def sample_clips(
    run: Run,
    model: LoadedModel,
    x_T: Modal,
    *,
    generator: Generators,
    known: Modal | None = None,
    mask: Modal | None = None,
    progress: ProgressFn = quiet,
    steps_before: int = 0,
    then_steps: int = 0,
) -> Modal:
    """Run the sampler from x_T (CPU) on the run's device; `known`/`mask` make it conditional. Returns the
    samples on the CPU in float32: video (B, F, C, H, W), audio (B, 1, L); MmgenError if they are not finite.
    `steps_before`, `then_steps`: the steps of the same count taken before this call (earlier windows') and to be
    taken after it (later windows', the clips' upscaling: upscale_steps): its steps are numbered on from the ones
    and counted in one total with both, so a step's ETA is the whole count's."""
    device = run.compute.device
    condition = None
    if known:
        known = each(lambda v: v.to(device), known)
        mask = each(lambda v: v.to(device), mask) if mask else None
        condition = run.sampling.condition(known, mask)
    samples = clip_sampling.sample_clips(
        model.model,
        run.sampling,
        run.compute,
        x_T,
        generator=generator,
        condition=condition,
        callback=lambda info: progress(
            ProgressEvent("steps", steps_before + info["i"] + 1, steps_before + info["total"] + then_steps)),
    )
    return finite(samples, run, model)


def finite(samples: Modal, run: Run, model: LoadedModel) -> Modal:
    """`samples` if they hold no NaN or Inf. A model that overflows while sampling (weights too large for the
    precision, a diverged fine-tune) is reported here, as a failed run, before anything is written."""
    for name, x in samples.items():
        if not torch.isfinite(x).all():
            fixes = []
            if run.adapters:  # an adapter's weight multiplies its change to every adapted layer
                fixes.append(f"check the adapter weights ({', '.join(use.describe() for use in run.adapters)})")
            if run.compute.dtype != torch.float32:
                fixes.append("try --precision fp32")
            hint = "; ".join(fixes) or "the model cannot be sampled with these settings"
            raise MmgenError(f"{model.name}: sampling gave NaN or Inf values in the {name}: the model overflowed",
                             hint=hint)
    return samples


def window_sampler(run: Run, model: LoadedModel, progress: ProgressFn = quiet, windows: int = 0, then_steps: int = 0,
                   generator: torch.Generator | None = None) -> SampleWindow:
    """Conditional sampling of one model window at a time, for windows.generate_continuous: every window
    draws fresh noise from the run's one generator (`generator`: the seed's, which a later stage may go on drawing
    from), so the whole long output follows from the seed.
    Each window's steps are a count of their own; given `windows` (how many it samples), they count on from window
    to window instead, into one total with the `then_steps` of a stage after them (an upscale of their video), so a
    step's ETA is the whole run's."""
    if generator is None:
        (generator,) = clip_generators([run.seed])
    per_window = step_count(run.sampling)
    sampled = 0  # windows sampled so far

    def sample_window(known: Modal, mask: Modal) -> Modal:
        nonlocal sampled
        x_T = initial_noise(clip_shapes(model), generator)
        before, after = (sampled * per_window, (windows - sampled - 1) * per_window + then_steps) if windows else (0, 0)
        sampled += 1
        return sample_clips(run, model, x_T, generator=generator, known=known, mask=mask, progress=progress,
                            steps_before=before, then_steps=after)

    return sample_window


def upsampler_settings(sr: LoadedModel) -> SamplingConfig:
    """How `sr` samples: its registry entry's settings, else the official SR sampling."""
    return upsampler_sampling(sr.entry)


def upscale_steps(sr: LoadedModel, clips: int, frames: int) -> int:
    """The sampling steps `upscale` takes on `clips` clips of `frames` frames: its sampler's on every chunk."""
    return clips * math.ceil(frames / SR_CHUNK) * step_count(upsampler_settings(sr))


def upscale(
    run: Run, sr: LoadedModel, video: torch.Tensor, generators: Sequence[torch.Generator], progress: ProgressFn = quiet,
    steps_before: int = 0,
) -> torch.Tensor:
    """Super-resolve every frame of video (B, T, 3, h, w) → (B, T, 3, H, W), as the official sampler does
    (official-checkpoints.md §7): low_res = the float sample, x_T one noise image per video repeated over its
    frames, each frame denoised independently — in chunks of one model clip's frames to bound memory.
    `generators`: each clip's own, after its sampling drew from it: the upsampler's noise continues the clip's
    stream, so it is none of the numbers of its x_T or its steps' noise (a generator seeded seed + 2^40 drew
    exactly its x_T's video again, reshaped: torch keeps a seed's low 32 bits).
    Its steps are reported as sampling's ("steps"), after `steps_before` of the same clips (their base sampling's,
    an animation's windows'),
    so a slow upscale has step lines and the clips' one ETA (a 25-step 256×256 upscale was an hour's silence)."""
    config = sr.config
    batch, frames, _, h, w = video.shape
    size = (h * config.image_size // config.small_size, w * config.image_size // config.small_size)
    settings = upsampler_settings(sr)
    device = run.compute.device
    total = steps_before + upscale_steps(sr, batch, frames)
    done = steps_before  # steps of these clips taken before this sampler call's
    out = []
    for b, generator in enumerate(generators):
        image_noise = torch.randn((1, 3, *size), generator=generator)
        pieces = []
        for start in range(0, frames, SR_CHUNK):
            low_res = video[b, start : start + SR_CHUNK].to(device)  # (N, 3, h, w)
            x_T = {"image": image_noise.expand(low_res.shape[0], -1, -1, -1).to(device)}
            with run.compute.autocast():
                result = sample(
                    srunet_denoiser(sr.model, low_res), x_T, settings, generator=generator,
                    callback=lambda info, at=done: progress(ProgressEvent("steps", at + info["i"] + 1, total)))
            done += step_count(settings)
            pieces.append(result["image"].float().cpu())  # (N, 3, H, W)
            progress(ProgressEvent("upscale", b * frames + min(start + SR_CHUNK, frames), batch * frames))
        out.append(torch.cat(pieces))
    return finite({"video": torch.stack(out)}, run, sr)["video"]  # (B, T, 3, H, W)
