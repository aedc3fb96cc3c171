"""Diffusion: the noise schedule and its respacing, samplers (ddpm, ddim, dpm++, the paper's DPM-Solver) and
zero-shot conditional sampling. States are Modal dicts: one code path for video, audio and images."""

from __future__ import annotations

from mmgen.diffusion.clips import generate_clips
from mmgen.diffusion.denoisers import Denoiser, Prediction, mmunet_denoiser, srunet_denoiser
from mmgen.diffusion.guidance import Condition
from mmgen.diffusion.loop import Callback
from mmgen.diffusion.paper_dpm_solver import sample_paper_dpm_solver
from mmgen.diffusion.samplers import (
    SAMPLERS,
    initial_noise,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    schedule_for,
)
from mmgen.diffusion.sampling_config import SamplingConfig, load_sampling_preset, sampling_presets
from mmgen.diffusion.schedule import Schedule, linear_betas, space_timesteps

__all__ = [
    "SAMPLERS",
    "Callback",
    "Condition",
    "Denoiser",
    "Prediction",
    "SamplingConfig",
    "Schedule",
    "generate_clips",
    "initial_noise",
    "linear_betas",
    "load_sampling_preset",
    "mmunet_denoiser",
    "sample",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_paper_dpm_solver",
    "sampling_presets",
    "schedule_for",
    "space_timesteps",
    "srunet_denoiser",
]
