"""Diffusion: the noise schedule and its respacing, samplers (ddpm, ddim, dpm++, the paper's DPM-Solver) and
zero-shot conditional sampling. States are Modal dicts: one code path for video, audio and images."""

import lazy_loader

# Attributes load on first use (lazy_loader): `mmgen --help` or a mistyped flag should not wait seconds for
# torch, PyAV and scipy to import.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "clips": ["generate_clips"],
        "denoisers": ["Denoiser", "Prediction", "mmunet_denoiser", "srunet_denoiser"],
        "guidance": ["Condition"],
        "loop": ["Callback"],
        "paper_dpm_solver": ["sample_paper_dpm_solver"],
        "samplers": [
            "SAMPLERS", "initial_noise", "sample", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "schedule_for",
            "step_count",
        ],
        "sampling_config": ["SamplingConfig", "load_sampling_preset", "sampling_presets"],
        "schedule": ["Schedule", "linear_betas", "space_timesteps"],
    },
)
