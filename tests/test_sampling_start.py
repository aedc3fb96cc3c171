"""Starting the reverse process below t = 999 (SamplingConfig.start_timestep), as the demo model does: the
sampler keeps its number of model calls, spends them on timesteps 0 … start, and the schedule values at those
timesteps are the trained ones."""

from __future__ import annotations

import pytest
import torch

from mmgen.config import from_dict
from mmgen.diffusion import SamplingConfig, initial_noise, sample
from mmgen.diffusion.denoisers import Prediction
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


def test_the_demo_model_samples_from_timestep_650():
    settings = load_registry().entries["demo"].sampling
    assert settings.start_timestep == 650
    seen = []

    def zero_noise(x, t):  # a denoiser that predicts no noise and records the timesteps it is asked about
        seen.append(int(t[0]))
        return Prediction(eps={k: torch.zeros_like(v) for k, v in x.items()})

    x_T = initial_noise({"video": (1, 2, 3, 4, 4), "audio": (1, 1, 16)}, torch.Generator().manual_seed(0))
    sample(zero_noise, x_T, settings)
    assert len(seen) == settings.steps and seen[0] == 650 and seen == sorted(seen, reverse=True)
