"""How an upsampler samples, known from its registry entry without loading it: what upscaling runs
(pipelines.sampling), what a sidecar records as `upsampling`, and what a batch job's content hash holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmgen.diffusion.sampling_config import SamplingConfig

if TYPE_CHECKING:
    from mmgen.weights.registry import ModelEntry

SR_DEFAULT = SamplingConfig(sampler="ddim", steps=25, clip_denoised=True)  # the official SR sampling


def upsampler_sampling(entry: ModelEntry | None) -> SamplingConfig:
    """How the upsampler of registry entry `entry` samples: its settings, else the official SR sampling (an entry
    that names none, or a model imported without one)."""
    return entry.sampling if entry is not None and entry.sampling else SR_DEFAULT


def upsampling_record(settings: SamplingConfig) -> dict:
    """The settings of an upsampler's sampling that decide what it makes of a clip, as its sidecar records them (an
    entry may be a user's, with other steps than the shipped 25), so the same clip can be made again."""
    return {"sampler": settings.sampler, "steps": settings.steps,
            **({"eta": settings.eta} if settings.sampler == "ddim" else {}), "clip_denoised": settings.clip_denoised,
            **({"start_timestep": settings.start_timestep} if settings.start_timestep is not None else {})}
