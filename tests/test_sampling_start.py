"""The demo model's sampling settings. Starting the reverse process below t = 999 (start_timestep): the
sampler keeps its number of model calls, spends them on timesteps 0 … start, and the schedule values there are
the trained ones. Starting from where the data's mean is at that step (start_mean): the draw is shifted by
√ᾱ_start · the mean of the training clips, and that mean is the world's. Keeping the sound free of DC offset
(zero_mean): the clean sample the denoiser implies has zero mean over time, and nothing else about the
prediction changes."""

from __future__ import annotations

import pytest
import torch

from mmgen.config import from_dict
from mmgen.data.synthetic import WorldConfig, render_batch
from mmgen.diffusion import SamplingConfig, initial_noise, load_sampling_preset, sample
from mmgen.diffusion.denoisers import Prediction, zero_mean
from mmgen.diffusion.samplers import schedule_for, start_noise
from mmgen.diffusion.schedule import Schedule
from mmgen.errors import ConfigError
from mmgen.pipelines.session import prepare
from mmgen.pipelines.settings import SoundtrackSettings
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


def test_the_demo_model_samples_from_timestep_650_centred_on_its_data_without_dc_offset():
    settings = load_registry().entries["demo"].sampling
    assert settings.start_timestep == 650 and settings.zero_mean == ("audio",)
    seen, first = [], {}

    def zero_noise(x, t):  # a denoiser that predicts no noise and records what it is asked about
        seen.append(int(t[0]))
        first.setdefault("x", x)
        return Prediction(eps={k: torch.zeros_like(v) for k, v in x.items()})

    x_T = initial_noise({"video": (4, 8, 3, 32, 32), "audio": (4, 1, 4096)}, torch.Generator().manual_seed(0))
    sample(zero_noise, x_T, settings)
    assert len(seen) == settings.steps and 600 < seen[0] <= 650 and seen == sorted(seen, reverse=True)
    # the first call sees the noise centred where the forward process leaves the demo world's mean pixel
    root_alpha_bar = float(FULL.alphas_cumprod[seen[0]]) ** 0.5
    assert first["x"]["video"].mean() == pytest.approx(root_alpha_bar * settings.start_mean["video"], abs=0.005)
    assert torch.equal(first["x"]["audio"], x_T["audio"])


def test_the_demo_start_mean_is_the_mean_pixel_of_the_world_it_was_trained_on():
    clips = render_batch(WorldConfig(frames=8, size=16, sample_rate=8000), 200, seed=3)
    world_mean = float(torch.stack([c.video for c in clips]).mean())
    # 0.02: training sees the clips decoded from H.264, whose YUV round trip leaves them ~0.014 darker
    assert load_registry().entries["demo"].sampling.start_mean["video"] == pytest.approx(world_mean, abs=0.02)


@pytest.mark.parametrize("start", [None, 400, 650])
def test_start_noise_moves_only_the_listed_modalities_by_root_alpha_bar_times_their_mean(start):
    x_T = initial_noise({"video": (1, 2, 3, 4, 4), "audio": (1, 1, 16)}, torch.Generator().manual_seed(1))
    shifted = start_noise(x_T, {"video": -0.75}, start)
    alpha_bar = float(FULL.alphas_cumprod[999 if start is None else start])
    assert torch.allclose(shifted["video"] - x_T["video"], torch.full_like(x_T["video"], -0.75 * alpha_bar**0.5))
    assert torch.equal(shifted["audio"], x_T["audio"])


@pytest.mark.parametrize("field", ["start_mean", "zero_mean"])
def test_a_setting_for_a_modality_that_does_not_exist_is_a_config_error(field):
    value = {"vidoe": -0.75} if field == "start_mean" else ["vidoe"]
    with pytest.raises(ConfigError, match="unknown modality 'vidoe'"):
        from_dict(SamplingConfig, {field: value}, "test.yaml")


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


def test_a_preset_changes_the_sampler_and_keeps_what_the_demo_needs():
    """`--preset fast` on the demo: dpm++ at 15 steps, still from t = 650 centred on its data without DC offset;
    `--preset paper`: the paper's runs exactly, whatever the model's own settings."""
    own = load_registry().entries["demo"].sampling
    fast = load_sampling_preset("fast", over=own)
    assert (fast.sampler, fast.steps) == ("dpm++", 15)
    assert (fast.start_timestep, fast.zero_mean, fast.start_mean) == (650, ("audio",), {"video": -0.75})
    paper = load_sampling_preset("paper", over=own)
    assert paper == load_sampling_preset("paper")  # nothing of the demo's own settings is left
    assert (paper.start_timestep, paper.zero_mean, paper.start_mean) == (None, (), {})
    assert (paper.conditional.sampler, paper.conditional.steps, paper.conditional.start_timestep) == ("ddpm", 1000, None)


def test_the_pipelines_apply_presets_over_the_model_entry():
    run = prepare(SoundtrackSettings(preset="balanced", seed=0))
    assert (run.sampling.sampler, run.sampling.steps, run.sampling.start_timestep) == ("dpm++", 25, 650)
    run = prepare(SoundtrackSettings(preset="paper", seed=0))
    assert (run.sampling.sampler, run.sampling.steps, run.sampling.start_timestep) == ("ddpm", 1000, None)
