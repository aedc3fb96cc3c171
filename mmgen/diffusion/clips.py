"""Sampling clips from the coupled video/audio model: the one entry point `mmgen generate` (through pipelines)
and training previews share, so the same weights, seed and settings give the same clip from either.

Randomness, so that a seed means the same thing everywhere:
- every clip k has its own generator, seeded with its seed, on the CPU; its x_T is drawn there and then moved
  to the device, so a clip depends neither on the device (up to numerics) nor on its batch;
- the RS-MMA window shifts are one per shifting block and model call, shared by the whole batch, so they
  cannot come from per-clip generators: they come from a fixed pseudo-random stream (SHIFT_SEED) restarted
  for every sampling call. They still vary over blocks and steps, which is what RS-MMA needs at inference;
- the per-step noise of the stochastic samplers (ddpm, ddim with eta > 0) comes from the same per-clip
  generators, after x_T: a clip is the same in any batch with every sampler;
- the upsampler's noise (pipelines.sampling.upscale) continues the same per-clip generators after sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmgen.diffusion.denoisers import mmunet_denoiser
from mmgen.diffusion.guidance import Condition
from mmgen.diffusion.loop import Callback
from mmgen.diffusion.samplers import Generators, initial_noise, sample
from mmgen.diffusion.sampling_config import SamplingConfig
from mmgen.modal import Modal, each
from mmgen.runtime.device import Compute

SHIFT_SEED = 20230601  # the RS-MMA shift stream (any constant: see the module docstring)


def clip_shapes(config: Any, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """x_T shapes of `batch` clips of a model `config`: video (B, F, C, H, W) then audio (B, 1, L) — the
    official draw order."""
    return {"video": (batch, *config.video_size), "audio": (batch, *config.audio_size)}


def clip_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def batch_noise(config: Any, generators: Sequence[torch.Generator]) -> Modal:
    """x_T of a batch: each clip's noise from its own generator, stacked."""
    return each(lambda *xs: torch.cat(xs), *[initial_noise(clip_shapes(config), g) for g in generators])


def sample_clips(
    model: torch.nn.Module,
    sampling: SamplingConfig,
    compute: Compute,
    x_T: Modal,
    *,
    generator: Generators,
    condition: Condition | None = None,
    callback: Callback | None = None,
) -> Modal:
    """Run `sampling` from x_T (CPU) on `compute`'s device, conditioned when `condition` is given (its tensors
    on that device). Returns the samples on the CPU in float32: video (B, F, C, H, W), audio (B, 1, L)."""
    device = compute.device
    denoiser = mmunet_denoiser(model, generator=torch.Generator().manual_seed(SHIFT_SEED))
    with compute.autocast():
        out = sample(
            denoiser,
            each(lambda v: v.to(device), x_T),
            sampling,
            generator=generator,
            callback=callback,
            condition=condition,
        )
    return each(lambda v: v.float().cpu(), out)


def generate_clips(
    model: torch.nn.Module,
    sampling: SamplingConfig,
    compute: Compute,
    seeds: Sequence[int],
    *,
    callback: Callback | None = None,
) -> Modal:
    """New clips from noise, clip b from seed `seeds[b]`: the same clip in any batch within float rounding (a batched
    convolution rounds otherwise, not bitwise); eval mode for the call."""
    was_training = model.training
    model.eval()
    try:
        generators = clip_generators(seeds)
        x_T = batch_noise(model.config, generators)
        return sample_clips(model, sampling, compute, x_T, generator=generators, callback=callback)
    finally:
        model.train(was_training)
