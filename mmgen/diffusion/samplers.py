"""Samplers over a discrete schedule: DDPM, DDIM and DPM-Solver++(2M), one small function each.

They share one contract, `sample_X(denoiser, x_T, schedule, *, generator, callback, clip_denoised,
condition, …)` → the final sample, and one loop (`loop.run_steps`), so conditioning and progress reporting
work the same for all. Each is registered in SAMPLERS with what it needs (its schedule, its options), so
`sample()` runs any of them from a SamplingConfig without knowing which. States are Modal dicts; every
formula is written once and applied per modality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from mmgen.diffusion.denoisers import Denoiser, Prediction, zero_mean
from mmgen.diffusion.guidance import Condition
from mmgen.diffusion.loop import Callback, Step, run_steps
from mmgen.diffusion.paper_dpm_solver import sample_paper_dpm_solver, singlestep_orders
from mmgen.diffusion.sampling_config import SamplingConfig
from mmgen.diffusion.schedule import T_TRAIN, Schedule, linear_betas
from mmgen.errors import ConfigError
from mmgen.modal import Modal, each


def initial_noise(
    shapes: Mapping[str, Sequence[int]],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Modal:
    """x_T ~ N(0, I) per modality, drawn in the order of `shapes` (video, then audio: the official order)
    on the generator's device and then moved, so a seed gives the same x_T on every device. (The official
    scripts draw it from the global CPU RNG.)"""
    return {k: _randn(tuple(shape), generator, dtype).to(device or "cpu") for k, shape in shapes.items()}


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    device = generator.device if generator is not None else "cpu"
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


# One generator for the whole batch, or one per sample (each sample's noise then comes from its own)
Generators = torch.Generator | Sequence[torch.Generator] | None


def _noise_like(x: Modal, generator: Generators) -> Modal:
    """Fresh N(0, I) noise per modality, drawn in key order (video then audio, as the official samplers).
    With one generator per sample, sample b's noise is what its generator draws for a batch of one, so a
    stochastic sampler makes the same sample in any batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return each(lambda v: _randn(tuple(v.shape), generator, v.dtype).to(v.device), x)
    if len(generator) != next(iter(x.values())).shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {next(iter(x.values())).shape[0]}")
    per_sample = [_noise_like({k: v[:1] for k, v in x.items()}, g) for g in generator]
    return each(lambda *parts: torch.cat(parts), *per_sample)


def discrete_steps(schedule: Schedule) -> list[Step]:
    """The steps of a discrete sampler: respaced index K−1 down to 0, the last one landing on clean data."""
    ab, ab_prev = schedule.alphas_cumprod.tolist(), schedule.alphas_cumprod_prev.tolist()
    return [Step(int(schedule.timesteps[k]), ab[k], ab_prev[k]) for k in reversed(range(len(schedule)))]


def _predict(
    denoiser: Denoiser, x: Modal, schedule: Schedule, k: int, clip_denoised: bool
) -> tuple[Prediction, Modal]:
    """The denoiser's prediction at respaced index k and the clean sample x̂0 it implies."""
    some = next(iter(x.values()))
    t = torch.full((some.shape[0],), int(schedule.timesteps[k]), dtype=torch.int64, device=some.device)
    pred = denoiser(x, t)
    ab = float(schedule.alphas_cumprod[k])
    recip, recipm1 = math.sqrt(1.0 / ab), math.sqrt(1.0 / ab - 1.0)
    x0 = each(lambda xt, eps: recip * xt - recipm1 * eps, x, pred.eps)
    if clip_denoised:
        x0 = each(lambda v: v.clamp(-1.0, 1.0), x0)
    return pred, x0


def sample_ddpm(
    denoiser: Denoiser,
    x_T: Modal,
    schedule: Schedule,
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_denoised: bool = True,
    condition: Condition | None = None,
) -> Modal:
    """Ancestral sampling (Ho et al., 2020) with the FIXED_LARGE variance, or LEARNED_RANGE (Nichol &
    Dhariwal, 2021) when the denoiser predicts variance values; the paper's conditional sampler."""
    c0_all, ct_all = schedule.posterior_mean_coefs
    fixed_log_var = schedule.fixed_large_log_variance

    def step(x: Modal, i: int, prev_x0: Modal | None) -> tuple[Modal, Modal]:
        k = len(schedule) - 1 - i
        pred, x0 = _predict(denoiser, x, schedule, k, clip_denoised)
        c0, ct = float(c0_all[k]), float(ct_all[k])
        mean = each(lambda a, b: c0 * a + ct * b, x0, x)
        if k == 0:
            return mean, x0
        if pred.var_values is None:
            std = {key: math.exp(0.5 * float(fixed_log_var[k])) for key in x}
        else:
            std = each(lambda v: torch.exp(0.5 * schedule.learned_range_log_variance(k, v)), pred.var_values)
        noise = _noise_like(x, generator)
        return each(lambda m, s, n: m + s * n, mean, std, noise), x0

    return run_steps(step, discrete_steps(schedule), x_T, condition=condition, callback=callback)


def sample_ddim(
    denoiser: Denoiser,
    x_T: Modal,
    schedule: Schedule,
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_denoised: bool = True,
    condition: Condition | None = None,
    eta: float = 0.0,
) -> Modal:
    """DDIM (Song et al., 2021); eta = 0 is deterministic, eta = 1 matches DDPM's noise level."""
    ab_all, ab_prev_all = schedule.alphas_cumprod.tolist(), schedule.alphas_cumprod_prev.tolist()

    def step(x: Modal, i: int, prev_x0: Modal | None) -> tuple[Modal, Modal]:
        k = len(schedule) - 1 - i
        _, x0 = _predict(denoiser, x, schedule, k, clip_denoised)
        ab, ab_prev = ab_all[k], ab_prev_all[k]
        recip, recipm1 = math.sqrt(1.0 / ab), math.sqrt(1.0 / ab - 1.0)
        # eps re-derived from the (possibly clipped) x̂0, as the official sampler does.
        eps = each(lambda xt, x0_: (recip * xt - x0_) / recipm1, x, x0)
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab)) * math.sqrt(1 - ab / ab_prev)
        keep = math.sqrt(1 - ab_prev - sigma**2)
        x_next = each(lambda x0_, e: math.sqrt(ab_prev) * x0_ + keep * e, x0, eps)
        if sigma > 0 and k > 0:
            x_next = each(lambda v, n: v + sigma * n, x_next, _noise_like(x, generator))
        return x_next, x0

    return run_steps(step, discrete_steps(schedule), x_T, condition=condition, callback=callback)


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x_T: Modal,
    schedule: Schedule,
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_denoised: bool = True,
    condition: Condition | None = None,
) -> Modal:
    """DPM-Solver++(2M) (Lu et al., 2022): second-order multistep in log-SNR, data prediction; the first
    step and the final step to clean data are first order. Deterministic (`generator` is unused)."""
    ab_all, ab_prev_all = schedule.alphas_cumprod.tolist(), schedule.alphas_cumprod_prev.tolist()

    def log_snr(ab: float) -> float:  # λ = log(α/σ)
        return 0.5 * math.log(ab / (1.0 - ab))

    def step(x: Modal, i: int, prev_x0: Modal | None) -> tuple[Modal, Modal]:
        k = len(schedule) - 1 - i
        _, x0 = _predict(denoiser, x, schedule, k, clip_denoised)
        ab, ab_next = ab_all[k], ab_prev_all[k]
        if ab_next >= 1.0:
            return x0, x0
        h = log_snr(ab_next) - log_snr(ab)
        data = x0
        if prev_x0 is not None:
            r = (log_snr(ab) - log_snr(ab_all[k + 1])) / h
            data = each(lambda d, d_prev: (1 + 0.5 / r) * d - (0.5 / r) * d_prev, x0, prev_x0)
        ratio = math.sqrt((1.0 - ab_next) / (1.0 - ab))  # σ_next / σ
        gain = -math.sqrt(ab_next) * math.expm1(-h)  # −α_next·(e^{−h} − 1)
        return each(lambda xt, d: ratio * xt + gain * d, x, data), x0

    return run_steps(step, discrete_steps(schedule), x_T, condition=condition, callback=callback)


def _respaced(*specs: Callable[[int], str]) -> Callable[[int, int | None], Schedule]:
    """A discrete sampler's schedule: the first of the respacings `spec(steps)` that exists over timesteps
    0 … start (999 when None). A prefix of the betas keeps every ᾱ_t, so the kept timesteps keep their meaning."""

    def schedule(steps: int, start: int | None) -> Schedule:
        last = T_TRAIN - 1 if start is None else start
        if not steps <= last + 1 <= T_TRAIN:
            raise ConfigError(f"start timestep must be between {steps - 1} and {T_TRAIN - 1}, got {start}")
        betas = None if start is None else linear_betas()[: last + 1]
        for spec in specs[:-1]:
            try:
                return Schedule.respaced(spec(steps), betas)
            except ConfigError:
                pass
        return Schedule.respaced(specs[-1](steps), betas)

    return schedule


def _full_schedule(steps: int, start: int | None) -> Schedule:
    """The un-respaced schedule, for a solver that builds its own time grid over the whole range."""
    return Schedule.respaced("")


@dataclass(frozen=True)
class Sampler:
    """A sampler and what it needs: the schedule it runs on for (steps, start timestep), and the
    SamplingConfig fields it takes as keyword options. `sample()` asks these instead of the sampler's name."""

    run: Callable[..., Modal]  # sample_X(denoiser, x_T, schedule, *, generator, callback, clip_denoised, condition, …)
    schedule: Callable[[int, int | None], Schedule]
    options: tuple[str, ...] = ()

    def __call__(self, *args, **kwargs) -> Modal:
        return self.run(*args, **kwargs)


SAMPLERS = {
    "ddpm": Sampler(sample_ddpm, _respaced(str)),  # evenly spaced from 0 to 999
    # the official "ddimN" (0, s, 2s, …), or evenly spaced where no stride gives exactly N steps
    "ddim": Sampler(sample_ddim, _respaced(lambda steps: f"ddim{steps}", str), options=("eta",)),
    "dpm++": Sampler(sample_dpmpp_2m, _respaced(lambda steps: f"logsnr{steps}")),  # even in log-SNR
    "paper": Sampler(sample_paper_dpm_solver, _full_schedule, options=("steps",)),  # its own grid; no start
}


def schedule_for(sampler: str, steps: int, start: int | None = None) -> Schedule:
    """The schedule `sampler` runs with `steps` model calls, starting at training timestep `start` (None: 999).

    Starting lower respaces only timesteps 0 … start, and sampling starts from noise there (see start_noise for
    the draw's mean). The paper's solver always runs on the full schedule."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    if not 1 <= steps <= T_TRAIN:
        raise ConfigError(f"steps must be between 1 and {T_TRAIN}, got {steps}")
    return SAMPLERS[sampler].schedule(steps, start)


def step_count(config: SamplingConfig) -> int:
    """The steps `sample` takes with `config`, as its callback counts them: a model call each, but the paper
    solver's outer steps of up to 3 calls. Known before sampling, so a clip's later stage is in its ETA."""
    if config.sampler == "paper":
        return len(singlestep_orders(config.steps))
    return config.steps


def start_noise(x_T: Modal, data_mean: Mapping[str, float], start: int | None) -> Modal:
    """x_T shifted by √ᾱ_start · the data's mean, per modality in `data_mean`: the mean of q(x_start), where
    `start` is the first (noisiest) timestep the sampler runs.

    The forward process at t keeps √ᾱ_t of the data, so its samples are centred on √ᾱ_t · E[x0], not on 0:
    nothing at t = 999 (√ᾱ = 0.006), but 12 % of the data's mean at t = 650, an offset a network sees plainly
    over thousands of pixels. The variance is left at 1 (q's is 1 − ᾱ(1 − Var x0), within 1.4 % of it at
    t ≥ 650)."""
    alpha_bar = float(Schedule.respaced("").alphas_cumprod[T_TRAIN - 1 if start is None else start])
    return {k: v + alpha_bar**0.5 * data_mean[k] if k in data_mean else v for k, v in x_T.items()}


def sample(
    denoiser: Denoiser,
    x_T: Modal,
    config: SamplingConfig,
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    condition: Condition | None = None,
) -> Modal:
    """Sample with the sampler, step count and options of `config` (a preset or a model's own settings)."""
    schedule = schedule_for(config.sampler, config.steps, config.start_timestep)
    sampler = SAMPLERS[config.sampler]
    if config.zero_mean:
        denoiser = zero_mean(denoiser, config.zero_mean)
    if config.start_mean:
        x_T = start_noise(x_T, config.start_mean, int(schedule.timesteps.max()))
    return sampler(
        denoiser,
        x_T,
        schedule,
        generator=generator,
        callback=callback,
        clip_denoised=config.clip_denoised,
        condition=condition,
        **{name: getattr(config, name) for name in sampler.options},
    )
