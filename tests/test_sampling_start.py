"""The demo model's two sampling settings. Starting the reverse process below t = 999 (start_timestep): the
sampler keeps its number of model calls, spends them on timesteps 0 … start, and the schedule values there are
the trained ones. Keeping the sound free of DC offset (zero_mean): the clean sample the denoiser implies has
zero mean over time, and nothing else about the prediction changes."""

from __future__ import annotations

import pytest
import torch

from mmgen.config import from_dict
from mmgen.diffusion import SamplingConfig, initial_noise, sample
from mmgen.diffusion.denoisers import Prediction, zero_mean
from mmgen.diffusion.samplers import schedule_for
from mmgen.diffusion.schedule import Schedule
from mmgen.errors import ConfigError
from mmgen.weights.registry import load_registry

FULL = Schedule.respaced("")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
def test_a_lower_start_spends_the_same_calls_on_the_trained_timesteps_below_it(sampler):
    schedule = schedule_for(sampler, 25, start=650)
    assert len(schedule) == 25
    assert 600 < int(schedule.timesteps[-1]) <= 650 and int(schedule.timesteps[0]) <= 30
    assert torch.allclose(schedule.alphas_cumprod, FULL.alphas_cumprod[schedule.timesteps], rtol=1e-12)


def test_without_a_start_the_schedule_is_the_official_respacing():
    assert torch.equal(schedule_for("ddim", 25).timesteps, Schedule.respaced("ddim25").timesteps)
    assert torch.equal(schedule_for("dpm++", 25, start=999).timesteps, schedule_for("dpm++", 25).timesteps)


def test_a_start_outside_the_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="start_timestep"):
        from_dict(SamplingConfig, {"steps": 25, "start_timestep": 1200}, "test.yaml")
    with pytest.raises(ConfigError, match="start_timestep"):
        from_dict(SamplingConfig, {"steps": 25, "start_timestep": 10}, "test.yaml")


def test_the_demo_model_samples_from_timestep_650_without_dc_offset():
    settings = load_registry().entries["demo"].sampling
    assert settings.start_timestep == 650 and settings.zero_mean == ("audio",)
    seen = []

    def zero_noise(x, t):  # a denoiser that predicts no noise and records the timesteps it is asked about
        seen.append(int(t[0]))
        return Prediction(eps={k: torch.zeros_like(v) for k, v in x.items()})

    x_T = initial_noise({"video": (1, 2, 3, 4, 4), "audio": (1, 1, 16)}, torch.Generator().manual_seed(0))
    sample(zero_noise, x_T, settings)
    assert len(seen) == settings.steps and seen[0] == 650 and seen == sorted(seen, reverse=True)


def implied_clean(x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
    alpha_bar = float(FULL.alphas_cumprod[t])
    return (x - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5


@pytest.mark.parametrize("t", [5, 400, 900])
def test_zero_mean_removes_only_the_offset_of_the_implied_clean_sound(t):
    generator = torch.Generator().manual_seed(t)
    x = {"video": torch.randn(2, 3, 3, 4, 4, generator=generator), "audio": torch.randn(2, 1, 64, generator=generator)}
    offset = torch.tensor([0.3, -0.2]).view(2, 1, 1)
    raw = {"video": torch.randn(2, 3, 3, 4, 4, generator=generator), "audio": torch.randn(2, 1, 64, generator=generator)}

    def offset_denoiser(x_t, timesteps):  # implies a clean sound with a DC offset
        return Prediction(eps={"video": raw["video"], "audio": raw["audio"] - offset})

    timesteps = torch.full((2,), t)
    before = implied_clean(x["audio"], offset_denoiser(x, timesteps).eps["audio"], t)
    after_eps = zero_mean(offset_denoiser, ("audio",))(x, timesteps).eps
    after = implied_clean(x["audio"], after_eps["audio"], t)
    assert before.mean(dim=-1).abs().max() > 0.01
    assert after.mean(dim=-1).abs().max() < 1e-4
    assert torch.allclose(after, before - before.mean(dim=-1, keepdim=True), atol=1e-4)  # the rest untouched
    assert torch.equal(after_eps["video"], raw["video"])  # other modalities untouched
