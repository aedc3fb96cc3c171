"""Samplers checked where the right answer is known in closed form: Gaussian data, whose optimal noise
predictor can be written down, so a correct sampler must reproduce the data's mean and spread, and a
correct conditional sampler must move the generated modality to its conditional mean."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.diffusion import (
    SAMPLERS,
    Condition,
    Prediction,
    Schedule,
    initial_noise,
    load_sampling_preset,
    mmunet_denoiser,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sampling_presets,
    schedule_for,
    srunet_denoiser,
)
from mmgen.diffusion.sampling_config import SamplingConfig
from mmgen.errors import ConfigError

ALPHAS_CUMPROD = Schedule.respaced("").alphas_cumprod  # (1000,) float64, indexed by the model timestep

# Per-modality data distribution x0 ~ N(μ, s²) per element. Audio is narrow, like real (quiet) audio.
MEAN = {"video": 0.3, "audio": -0.2}
STD = {"video": 0.5, "audio": 0.1}


def gaussian_denoiser(x: dict[str, torch.Tensor], t: torch.Tensor) -> Prediction:
    """The optimal noise predictor for x0 ~ N(μ, s²) per element.

    With x_t = √ᾱ·x0 + √(1−ᾱ)·ε, x_t is Gaussian with mean √ᾱ·μ and variance ᾱs² + 1 − ᾱ, and
    Cov(ε, x_t) = √(1−ᾱ); so E[ε | x_t] = √(1−ᾱ)·(x_t − √ᾱ·μ) / (ᾱ·s² + 1 − ᾱ).
    """

    def eps(key: str, xt: torch.Tensor) -> torch.Tensor:
        ab = ALPHAS_CUMPROD[t].to(xt.dtype).view(-1, *[1] * (xt.dim() - 1))
        return (1 - ab).sqrt() * (xt - ab.sqrt() * MEAN[key]) / (ab * STD[key] ** 2 + 1 - ab)

    return Prediction(eps={k: eps(k, v) for k, v in x.items()})


def gaussian_sample(sampler: str, steps: int, n: int = 2048, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x_T = initial_noise({"video": (n, 2, 1, 2, 2), "audio": (n, 1, 8)}, generator)
    options = {"steps": steps} if sampler == "paper" else {}
    schedule = schedule_for(sampler, steps)
    return SAMPLERS[sampler](
        gaussian_denoiser, x_T, schedule, generator=generator, clip_denoised=False, **options
    )


def std_error(out: dict[str, torch.Tensor]) -> float:
    """The largest relative error of the per-modality standard deviation."""
    return max(abs(out[k].std().item() / STD[k] - 1) for k in out)


@pytest.mark.parametrize(
    "sampler, steps, std_tolerance",
    [
        ("ddpm", 1000, 0.03),  # the paper's conditional sampler, full length
        ("ddim", 200, 0.10),  # first order: slow on the narrow audio, whose shape forms in t < 30
        ("dpm++", 20, 0.03),
        ("paper", 20, 0.03),
    ],
)
def test_every_sampler_reproduces_gaussian_data(sampler, steps, std_tolerance):
    out = gaussian_sample(sampler, steps)
    for key, values in out.items():
        assert abs(values.mean().item() - MEAN[key]) < 0.02, key
    assert std_error(out) < std_tolerance


def test_dpmpp_at_20_steps_is_at_least_as_close_as_ddim_at_20_steps():
    dpmpp, ddim = std_error(gaussian_sample("dpm++", 20)), std_error(gaussian_sample("ddim", 20))
    assert dpmpp <= ddim
    assert dpmpp < 0.03


def test_ddim_converges_as_steps_grow():
    errors = [std_error(gaussian_sample("ddim", steps)) for steps in (20, 50, 200)]
    assert errors[0] > errors[1] > errors[2]


def ddpm_spread(schedule: Schedule, v: float) -> float:
    """The exact std of DDPM samples of N(μ, s²) (video's s) with the exact x̂0 and LEARNED_RANGE value v.

    One step is x_{k−1} = c0·E[x0 | x_k] + ct·x_k + σ_k·z with E[x0 | x_k] linear in x_k (slope
    g = √ᾱ·s² / (ᾱs² + 1 − ᾱ)), so the variance follows V_{k−1} = (c0·g + ct)²·V_k + σ_k², from V = 1 at
    x_T. The true reverse step has variance σ̃² + c0²·Var[x0 | x_k], which lies between v = −1 (σ̃², too small
    for few steps) and v = 1 (β, too large): few-step DDPM under-disperses with v = −1, over-disperses with
    v = 1, and both converge to s as the steps grow.
    """
    s, var = STD["video"], 1.0
    c0, ct = schedule.posterior_mean_coefs
    for k in reversed(range(len(schedule))):
        ab = float(schedule.alphas_cumprod[k])
        slope = float(c0[k]) * math.sqrt(ab) * s**2 / (ab * s**2 + 1 - ab) + float(ct[k])
        noise = 0.0 if k == 0 else math.exp(float(schedule.learned_range_log_variance(k, torch.tensor(v))))
        var = slope**2 * var + noise
    return math.sqrt(var)


def test_ddpm_uses_the_learned_range_variance_when_the_model_predicts_one():
    """With 10 steps the two ends of the learned range give clearly different spreads on each side of the
    data's; the sampler must land on the exact value of the variance it was told to use."""

    def with_variance(v: float):
        def denoise(x, t):
            eps = gaussian_denoiser(x, t).eps
            return Prediction(eps=eps, var_values={k: torch.full_like(e, v) for k, e in eps.items()})

        return denoise

    schedule = Schedule.respaced("10")
    spread = {}
    for v in (-1.0, 0.0, 1.0):
        generator = torch.Generator().manual_seed(0)
        x_T = initial_noise({"video": (4096, 2, 1, 2, 2), "audio": (4096, 1, 8)}, generator)
        out = sample_ddpm(with_variance(v), x_T, schedule, generator=generator, clip_denoised=False)
        spread[v] = out["video"].std().item()
        assert spread[v] == pytest.approx(ddpm_spread(schedule, v), rel=0.02), v
    assert spread[-1.0] < 0.8 * STD["video"] < STD["video"] < spread[1.0]  # 0.32 and 0.60 here
    assert ddpm_spread(Schedule.respaced("1000"), -1.0) == pytest.approx(STD["video"], rel=0.01)


# --- conditional sampling: a joint Gaussian in which audio follows video -----------------------------------

RHO = 0.9  # correlation of each video element with the audio element of the same index
JOINT_MEAN = torch.tensor([0.3, -0.2], dtype=torch.float64)  # (video, audio)
JOINT_STD = torch.tensor([0.5, 0.3], dtype=torch.float64)
JOINT_COV = torch.outer(JOINT_STD, JOINT_STD) * torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64)


def joint_denoiser(x: dict[str, torch.Tensor], t: torch.Tensor) -> Prediction:
    """The optimal noise predictor when each (video_j, audio_j) pair is N(m, Σ): E[ε | x_t] =
    √(1−ᾱ)·(ᾱΣ + (1−ᾱ)I)⁻¹·(x_t − √ᾱ·m), the same formula as above with a 2×2 covariance."""
    video, audio = x["video"], x["audio"]
    n = video.shape[0]
    pairs = torch.stack([video.reshape(n, -1), audio.reshape(n, -1)], dim=-1).double()  # (N, D, 2)
    ab = ALPHAS_CUMPROD[t].view(n, 1, 1)
    cov = ab.unsqueeze(-1) * JOINT_COV + (1 - ab.unsqueeze(-1)) * torch.eye(2, dtype=torch.float64)
    eps = (1 - ab).sqrt() * torch.linalg.solve(cov, (pairs - ab.sqrt() * JOINT_MEAN).unsqueeze(-1)).squeeze(
        -1
    )
    eps = eps.to(video.dtype)
    return Prediction(
        eps={"video": eps[..., 0].reshape(video.shape), "audio": eps[..., 1].reshape(audio.shape)}
    )


def joint_sample(sampler, steps, condition, n=1024, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x_T = initial_noise({"video": (n, 1, 1, 2, 2), "audio": (n, 1, 4)}, generator)
    options = {"steps": steps} if sampler == "paper" else {}
    schedule = schedule_for(sampler, steps)
    return SAMPLERS[sampler](
        joint_denoiser,
        x_T,
        schedule,
        generator=generator,
        clip_denoised=False,
        condition=condition,
        **options,
    )


CONDITIONAL_RUNS = [("ddpm", 100), ("ddim", 50), ("dpm++", 25), ("paper", 20)]


def guidance_progress(sampler, steps, known, generated, mode, scale=0.0) -> float:
    """How far the generated mean moved from its prior mean towards the conditional mean (0 … 1), given the
    known modality 1.5 standard deviations above its mean."""
    k, g = ("video", "audio").index(known), ("video", "audio").index(generated)
    value = (JOINT_MEAN[k] + 1.5 * JOINT_STD[k]).item()
    prior = JOINT_MEAN[g].item()
    target = prior + RHO * 1.5 * JOINT_STD[g].item()
    shape = (1, 1, 1, 2, 2) if known == "video" else (1, 1, 4)
    condition = Condition(known={known: torch.full(shape, value)}, mode=mode, scale=scale)
    out = joint_sample(sampler, steps, condition)
    assert torch.equal(out[known], torch.full_like(out[known], value))
    return (out[generated].mean().item() - prior) / (target - prior)


@pytest.mark.parametrize("sampler, steps", CONDITIONAL_RUNS)
@pytest.mark.parametrize("known, generated", [("video", "audio"), ("audio", "video")])
def test_guidance_pulls_the_generated_modality_to_its_conditional_mean(sampler, steps, known, generated):
    """Given the known modality 1.5 standard deviations above its mean, the generated one should move
    from its own mean to the conditional mean m_g + ρ·1.5·s_g. Replacement gets part of the way (with a
    deterministic sampler it converges to ≈0.32 for audio → video here, ancestral DDPM to ≈0.5); the
    paper's gradient guidance gets further (λ here suits this 4-element toy: the loss is a mean)."""
    replaced = guidance_progress(sampler, steps, known, generated, "replacement")
    pushed = guidance_progress(sampler, steps, known, generated, "gradient", 3000.0)
    assert 0.3 < replaced < 1.1
    assert replaced + 0.03 < pushed < 1.3


def test_the_paper_solver_conditions_every_model_call_and_reaches_the_converged_replacement_answer():
    """The singlestep order-3 solver calls the model three times per outer step. Replacement must reach
    those intermediate calls too: then its 20 calls land where a 200-step DDIM run does (the converged ODE
    answer); replacing only at the 7 outer steps stops at about two thirds of it (0.21 vs 0.32)."""
    converged = guidance_progress("ddim", 200, "audio", "video", "replacement")
    paper = guidance_progress("paper", 20, "audio", "video", "replacement")
    assert paper == pytest.approx(converged, abs=0.02)


@pytest.mark.parametrize("mode", ["replacement", "gradient"])
def test_a_masked_condition_keeps_its_known_part_and_guides_only_there(mode):
    """Audio known in its first two elements only (like the overlap with a previous window): those stay
    exactly the known values, the video elements paired with them follow them, the others do not."""
    audio_value = (JOINT_MEAN[1] + 1.5 * JOINT_STD[1]).item()
    known = torch.full((1, 1, 4), audio_value)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 4)
    condition = Condition(known={"audio": known}, mask={"audio": mask}, mode=mode, scale=3000.0)
    out = joint_sample("dpm++", 25, condition)

    audio, video = out["audio"], out["video"].reshape(-1, 4)
    assert torch.equal(audio[..., :2], torch.full_like(audio[..., :2], audio_value))
    assert not torch.isclose(audio[..., 2:], torch.tensor(audio_value)).any()
    conditional_video = JOINT_MEAN[0].item() + RHO * 1.5 * JOINT_STD[0].item()
    guided, free = video[:, :2].mean().item(), video[:, 2:].mean().item()
    assert abs(free - JOINT_MEAN[0].item()) < 0.05
    assert guided > JOINT_MEAN[0].item() + 0.3 * (conditional_video - JOINT_MEAN[0].item())


def test_a_condition_that_does_not_fit_the_sample_is_refused():
    x_T = initial_noise({"video": (2, 1, 1, 2, 2), "audio": (2, 1, 4)})
    with pytest.raises(ValueError, match="audio"):
        sample_ddim(
            joint_denoiser,
            x_T,
            Schedule.respaced("ddim5"),
            condition=Condition(known={"audio": torch.zeros(2, 1, 5)}),
        )
    with pytest.raises(ValueError, match="image"):
        sample_ddim(
            joint_denoiser,
            x_T,
            Schedule.respaced("ddim5"),
            condition=Condition(known={"image": torch.zeros(2)}),
        )


# --- reproducibility, progress, presets and model adapters ------------------------------------------------


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++", "paper"])
def test_the_same_seed_gives_the_same_sample_and_another_seed_a_different_one(sampler):
    first, again, other = (gaussian_sample(sampler, 10, n=8, seed=s) for s in (1, 1, 2))
    for key in first:
        assert torch.equal(first[key], again[key])
        assert not torch.equal(first[key], other[key])


def test_initial_noise_is_drawn_video_first_as_the_official_scripts_do():
    noise = initial_noise({"video": (2, 4, 3, 8, 8), "audio": (2, 1, 64)}, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    assert torch.equal(noise["video"], torch.randn((2, 4, 3, 8, 8), generator=generator))
    assert torch.equal(noise["audio"], torch.randn((2, 1, 64), generator=generator))


def test_ddim_with_eta_draws_noise_from_the_generator():
    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        x_T = initial_noise({"video": (4, 1, 1, 2, 2), "audio": (4, 1, 4)}, torch.Generator().manual_seed(0))
        return sample_ddim(joint_denoiser, x_T, Schedule.respaced("ddim10"), eta=1.0, generator=generator)

    assert torch.equal(run(1)["audio"], run(1)["audio"])
    assert not torch.equal(run(1)["audio"], run(2)["audio"])


def test_progress_reports_every_step_from_noisy_to_clean():
    reports = []
    x_T = initial_noise({"video": (2, 1, 1, 2, 2), "audio": (2, 1, 4)})
    sample_dpmpp_2m(joint_denoiser, x_T, schedule_for("dpm++", 6), callback=reports.append)
    assert [r["i"] for r in reports] == list(range(6))
    assert all(r["total"] == 6 for r in reports)
    assert [r["t"] for r in reports] == schedule_for("dpm++", 6).timesteps.flip(0).tolist()
    assert set(reports[-1]) == {"i", "total", "t", "x", "x0"}
    assert set(reports[-1]["x"]) == {"video", "audio"}


def test_schedules_per_sampler():
    assert schedule_for("ddim", 25).timesteps.tolist() == list(range(0, 1000, 40))  # the official ddim25
    assert len(schedule_for("ddim", 600)) == 600  # no stride gives 600 steps: evenly spaced instead
    assert schedule_for("ddpm", 1000).is_full
    assert schedule_for("paper", 20).is_full  # the solver builds its own 20-point grid
    dpmpp = schedule_for("dpm++", 25).timesteps.tolist()
    assert (len(dpmpp), dpmpp[0], dpmpp[-1]) == (25, 0, 999)
    assert sum(t < 50 for t in dpmpp) >= 5  # even in log-SNR: several steps where narrow data takes shape
    with pytest.raises(ConfigError, match="unknown sampler"):
        schedule_for("euler", 10)
    with pytest.raises(ConfigError, match="steps"):
        schedule_for("ddim", 0)


def test_the_shipped_presets():
    assert {"fast", "balanced", "paper"} <= set(sampling_presets())
    fast, balanced, paper = (load_sampling_preset(name) for name in ("fast", "balanced", "paper"))
    assert (fast.sampler, balanced.sampler, balanced.steps) == ("dpm++", "dpm++", 25)
    assert fast.steps < balanced.steps
    assert (paper.sampler, paper.steps, paper.clip_denoised) == ("paper", 20, False)
    conditional = paper.for_conditional()
    assert (conditional.sampler, conditional.steps, conditional.guidance) == ("ddpm", 1000, "gradient")
    assert conditional.guidance_scale == 3 * 2**20
    assert balanced.for_conditional() is balanced
    with pytest.raises(ConfigError, match="unknown sampling preset 'nope'.*balanced"):
        load_sampling_preset("nope")


def test_a_sampling_config_with_a_wrong_field_names_it():
    from mmgen.config import from_dict

    with pytest.raises(ConfigError, match="my.yaml: sampler"):
        from_dict(SamplingConfig, {"sampler": "euler"}, "my.yaml")
    with pytest.raises(ConfigError, match="my.yaml: steps must be between"):
        from_dict(SamplingConfig, {"steps": 0}, "my.yaml")


def test_sample_runs_a_preset_with_its_number_of_model_calls():
    calls = []

    def counting(x, t):
        calls.append(int(t[0]))
        return gaussian_denoiser(x, t)

    x_T = initial_noise({"video": (2, 1, 1, 2, 2), "audio": (2, 1, 4)})
    config = load_sampling_preset("fast")
    cond = config.condition({"video": torch.zeros(1, 1, 1, 2, 2)})
    out = sample(counting, x_T, config, condition=cond)
    assert len(calls) == config.steps
    assert torch.equal(out["video"], torch.zeros(2, 1, 1, 2, 2))


class RecordingMMUNet(torch.nn.Module):
    """A stand-in with the MM-UNet's call signature that answers in half precision."""

    def forward(self, video, audio, timesteps, *, audio_timesteps=None, shift=None, generator=None):
        self.seen = {"timesteps": timesteps, "shift": shift, "generator": generator}
        return (0.5 * video).half(), (-audio).half()


def test_mmunet_adapter_passes_shift_and_generator_and_returns_eps_in_the_sample_dtype():
    model, generator = RecordingMMUNet(), torch.Generator()
    denoise = mmunet_denoiser(model, shift=3, generator=generator)
    x = {"video": torch.ones(2, 4, 3, 8, 8), "audio": torch.ones(2, 1, 64)}
    pred = denoise(x, torch.tensor([5, 5]))
    assert model.seen["shift"] == 3 and model.seen["generator"] is generator
    assert pred.eps["video"].dtype == torch.float32 and torch.equal(pred.eps["audio"], -x["audio"])
    assert pred.var_values is None


def test_srunet_adapter_splits_eps_from_the_learned_range_value():
    class SRStandIn(torch.nn.Module):
        def forward(self, x, timesteps, low_res):
            up = torch.nn.functional.interpolate(low_res, size=x.shape[-2:])
            return torch.cat([x + up, -x], dim=1)

    low_res = torch.rand(2, 3, 4, 4)
    pred = srunet_denoiser(SRStandIn(), low_res)({"image": torch.ones(2, 3, 8, 8)}, torch.tensor([1, 1]))
    assert pred.eps["image"].shape == (2, 3, 8, 8) and torch.equal(
        pred.var_values["image"], -torch.ones(2, 3, 8, 8)
    )
    assert math.isclose(pred.eps["image"].min().item(), 1 + low_res.min().item(), rel_tol=1e-6)


# --- the size of the gradient-guidance push ---------------------------------------------------------------


def coupled_denoiser(weight: float, half: bool = False):
    """eps_video = 0 and eps_audio = weight·video (element by element): the audio's next state depends on
    the video, so the gradient of the audio mismatch reaches the video. With `half` the coupling is
    computed in float16 as two layers, a wide one and a small output layer, as a half-precision network
    would compute it (its backward meets the small layer first)."""

    def denoise(x, t):
        video = x["video"].reshape(x["audio"].shape)
        coupled = (0.001 * weight * (1000.0 * video.half())).float() if half else weight * video
        return Prediction(eps={"video": torch.zeros_like(x["video"]), "audio": coupled})

    return denoise


def first_guided_video(denoiser, x_T, known, scale):
    """The video after the first of two DDIM steps (t = 500 → 0), gradient-guided on `known` audio."""
    states = []
    condition = Condition(known={"audio": known}, mode="gradient", scale=scale)
    sample_ddim(
        denoiser,
        x_T,
        Schedule.respaced("ddim2"),
        clip_denoised=False,
        condition=condition,
        callback=lambda info: states.append(info["x"]["video"]),
    )
    return states[0]


def test_gradient_guidance_pushes_by_exactly_lambda_sqrt_alpha_bar_times_the_gradient():
    """One DDIM step from t = 500 with eps_audio = w·video: by hand, the next audio is a·audio + c·video
    with c = (√(1−ᾱ') − √ᾱ'·√(1/ᾱ−1))·w, the loss is the batch mean of each sample's mean squared mismatch,
    so ∂loss/∂video = 2c·(audio' − target)/(B·D), and the paper's update moves the video by −λ√ᾱ times
    that. (The official fp16 code multiplies the gradient by an extra 2^20; this would fail by that
    factor.)"""
    weight, scale, n, d = 0.7, 5.0, 3, 8
    generator = torch.Generator().manual_seed(0)
    x_T = initial_noise({"video": (n, 2, 1, 2, 2), "audio": (n, 1, d)}, generator)
    known = torch.linspace(-0.5, 0.5, d).view(1, 1, d)

    schedule = Schedule.respaced("ddim2")  # t = 0 and 500
    ab, ab_next = schedule.alphas_cumprod[1].item(), schedule.alphas_cumprod[0].item()
    audio_t = ab**0.5 * known + (1 - ab) ** 0.5 * x_T["audio"]  # replaced with the fixed noise x_T
    video_t = x_T["video"].reshape(n, 1, d)
    c = ((1 - ab_next) ** 0.5 - ab_next**0.5 * (1 / ab - 1) ** 0.5) * weight
    audio_next = (ab_next / ab) ** 0.5 * audio_t + c * video_t
    target = ab_next**0.5 * known + (1 - ab_next) ** 0.5 * x_T["audio"]
    gradient = 2 * c * (audio_next - target) / (n * d)
    expected = (ab_next / ab) ** 0.5 * video_t - scale * ab**0.5 * gradient

    got = first_guided_video(coupled_denoiser(weight), x_T, known, scale)
    torch.testing.assert_close(got.reshape(n, 1, d), expected, rtol=1e-5, atol=1e-6)


def test_gradient_guidance_keeps_its_size_when_the_model_computes_in_half_precision():
    """Over many elements ∂loss/∂eps is ~10^-6, below float16's normal range: without loss scaling the
    backward through a half-precision model flushes it to (nearly) zero. With the official λ = 3·2^20 the push
    must be the float32 one."""
    n, d = 2, 2**16
    generator = torch.Generator().manual_seed(0)
    x_T = initial_noise({"video": (n, 16, 1, 64, 64), "audio": (n, 1, d)}, generator)
    known = torch.full((1, 1, d), 0.5)
    scale = 3.0 * 2**20

    def push(half: bool) -> torch.Tensor:
        denoiser = coupled_denoiser(0.7, half)
        return first_guided_video(denoiser, x_T, known, scale) - first_guided_video(denoiser, x_T, known, 0.0)

    full, half = push(False), push(True)
    assert full.abs().mean() > 0.1
    assert torch.count_nonzero(half) == half.numel()  # no element's push flushed to zero
    torch.testing.assert_close(half, full, rtol=0.005, atol=0.005 * full.abs().max().item())
