"""The paper's sampler: DPM-Solver (Lu et al., 2022), singlestep, noise prediction, as the official
generation script runs it (official-checkpoints.md §5).

That run: 20 model calls as singlestep updates of orders [3,3,3,3,3,3,2] on a grid of 21 times evenly
spaced in log-SNR from t = 1 to t = 1/1000 (each update spans as many grid intervals as its order, so every
model call lands on a grid point: the fixture's 999, 949, 898, …, 3, 1); a continuous time t maps to the
network's integer timestep int((t − 1/N)·1000) (truncated); log √ᾱ(t) is the piecewise-linear
interpolation of the discrete schedule (ᾱ cast to float32) on the grid t_n = n/N; no clipping and no final
denoising step. We compute in float32 like the official code so the truncated model timesteps come out
identical. The official script samples unconditionally only; conditioning (replacement or gradient) is ours.
"""

from __future__ import annotations

import torch

from mmgen.diffusion.denoisers import Denoiser
from mmgen.diffusion.guidance import Condition
from mmgen.diffusion.loop import Callback, Step, run_steps
from mmgen.diffusion.schedule import Schedule
from mmgen.modal import Modal, each


def _interpolate(x: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(x) through (xp, yp), xp ascending; the end segments extend beyond the grid."""
    j = (torch.searchsorted(xp, x) - 1).clamp(0, len(xp) - 2)
    x0, x1, y0, y1 = xp[j], xp[j + 1], yp[j], yp[j + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class DiscreteVP:
    """DPM-Solver's continuous-time view of a discrete schedule (its "discrete" noise schedule)."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        self.total = len(alphas_cumprod)
        self.log_alphas = 0.5 * torch.log(alphas_cumprod.to(torch.float32))  # (N,) log √ᾱ, decreasing
        self.grid = torch.linspace(0.0, 1.0, self.total + 1)[1:]  # (N,) t_n = n/N, float32

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return _interpolate(t, self.grid, self.log_alphas)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ(t) = log(α/σ)."""
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))

    def time_of(self, log_snr: torch.Tensor) -> torch.Tensor:
        """The inverse of log_snr."""
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(log_snr), -2.0 * log_snr)
        return _interpolate(log_alpha, self.log_alphas.flip(0), self.grid.flip(0))

    def model_timestep(self, t: torch.Tensor) -> int:
        """The integer timestep the network was trained with at continuous time t (truncated, as official)."""
        return int(((t - 1.0 / self.total) * 1000.0).to(torch.int64))


def singlestep_orders(steps: int, order: int = 3) -> list[int]:
    """Orders of the singlestep solver's outer steps, summing to `steps` model calls (the official split)."""
    if order == 3:
        outer = steps // 3 + 1
        tail = {0: [2, 1], 1: [1], 2: [2]}[steps % 3]
        return [3] * (outer - len(tail)) + tail
    if order == 2:
        return [2] * (steps // 2) + [1] * (steps % 2)
    return [1] * steps


def sample_paper_dpm_solver(
    denoiser: Denoiser,
    x_T: Modal,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    clip_denoised: bool = False,
    condition: Condition | None = None,
    steps: int = 20,
    order: int = 3,
) -> Modal:
    """Singlestep DPM-Solver of `order` with `steps` model calls on the full (un-respaced) `schedule`, the
    official setting by default. clip_denoised (off in the official run) clamps each call's x̂0 to [−1, 1]
    and re-derives its noise. A condition replaces the known part at every model call, intermediate ones
    included. Deterministic (`generator` is unused)."""
    if not schedule.is_full:
        raise ValueError("the paper DPM-Solver runs on the full schedule; pass Schedule.respaced('')")
    vp = DiscreteVP(schedule.alphas_cumprod)
    orders = singlestep_orders(steps, order)
    t_end = torch.tensor(1.0 / vp.total)
    grid = vp.time_of(
        torch.linspace(vp.log_snr(torch.tensor(1.0)).item(), vp.log_snr(t_end).item(), steps + 1)
    )
    times = grid[torch.cumsum(torch.tensor([0, *orders]), 0)]  # (len(orders) + 1,) from t = 1 to t = 1/N

    # The loop conditions each outer step at its start; a singlestep update of order 3 also calls the model
    # at two intermediate times, and those calls must see the known part noised to their own level too, or
    # only 7 of the 20 calls are conditioned (replacement then moves the generated modality about a third
    # less far than the converged ODE answer in the Gaussian test).
    if condition is not None:
        condition.check(x_T)
        fixed_noise = condition.fixed_noise(x_T)

    def eps_at(x: Modal, t: torch.Tensor) -> tuple[Modal, Modal]:
        """The model's noise at continuous time t, and the x̂0 it implies."""
        if condition is not None:
            x = condition.replace(x, _alpha_bar(vp, t), fixed_noise)
        some = next(iter(x.values()))
        t_model = torch.full((some.shape[0],), vp.model_timestep(t), dtype=torch.int64, device=some.device)
        eps = denoiser(x, t_model).eps
        alpha, sigma = torch.exp(vp.log_alpha(t)).item(), vp.sigma(t).item()
        x0 = each(lambda xt, e: (xt - sigma * e) / alpha, x, eps)
        if clip_denoised:
            x0 = each(lambda v: v.clamp(-1.0, 1.0), x0)
            eps = each(lambda xt, d: (xt - alpha * d) / sigma, x, x0)
        return eps, x0

    def step(x: Modal, i: int, prev_x0: Modal | None) -> tuple[Modal, Modal]:
        s, t = times[i], times[i + 1]
        eps_s, x0 = eps_at(x, s)
        x_t = _update(vp, eps_at, x, eps_s, s, t, orders[i])
        return x_t, x0

    outer = [
        Step(vp.model_timestep(times[i]), _alpha_bar(vp, times[i]), _alpha_bar(vp, times[i + 1]))
        for i in range(len(orders))
    ]
    return run_steps(step, outer, x_T, condition=condition, callback=callback)


def _alpha_bar(vp: DiscreteVP, t: torch.Tensor) -> float:
    return torch.exp(2.0 * vp.log_alpha(t)).item()


def _update(
    vp: DiscreteVP, eps_at, x: Modal, eps_s: Modal, s: torch.Tensor, t: torch.Tensor, order: int
) -> Modal:
    """One singlestep DPM-Solver update from s to t of order 1, 2 (r1 = 1/2) or 3 (r1 = 1/3, r2 = 2/3),
    in the "dpm_solver" (not Taylor) form. The official first-order update applies the data-prediction
    formula to the audio branch; we use the noise-prediction formula for every modality (the released
    20-step order-3 run never takes a first-order step, so this does not change it)."""
    lam_s, lam_t = vp.log_snr(s), vp.log_snr(t)
    h = lam_t - lam_s
    log_alpha_s = vp.log_alpha(s)

    def towards(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_point/α_s, σ_point) for the linear part of an update landing at `point`."""
        return torch.exp(vp.log_alpha(point) - log_alpha_s), vp.sigma(point)

    decay_t, sigma_t = towards(t)
    phi_1 = torch.expm1(h)
    if order == 1:
        return each(lambda xs, e: decay_t * xs - sigma_t * phi_1 * e, x, eps_s)
    r1 = 0.5 if order == 2 else 1.0 / 3.0
    s1 = vp.time_of(lam_s + r1 * h)
    decay_1, sigma_1 = towards(s1)
    phi_11 = torch.expm1(r1 * h)
    x_s1 = each(lambda xs, e: decay_1 * xs - sigma_1 * phi_11 * e, x, eps_s)
    eps_1, _ = eps_at(x_s1, s1)
    if order == 2:
        c = 0.5 / r1 * sigma_t * phi_1
        return each(lambda xs, e, e1: decay_t * xs - sigma_t * phi_1 * e - c * (e1 - e), x, eps_s, eps_1)
    r2 = 2.0 / 3.0
    s2 = vp.time_of(lam_s + r2 * h)
    decay_2, sigma_2 = towards(s2)
    phi_12 = torch.expm1(r2 * h)
    phi_22 = torch.expm1(r2 * h) / (r2 * h) - 1.0
    phi_2 = phi_1 / h - 1.0

    def to_s2(xs: torch.Tensor, e: torch.Tensor, e1: torch.Tensor) -> torch.Tensor:
        return decay_2 * xs - sigma_2 * phi_12 * e - r2 / r1 * sigma_2 * phi_22 * (e1 - e)

    x_s2 = each(to_s2, x, eps_s, eps_1)
    eps_2, _ = eps_at(x_s2, s2)
    return each(
        lambda xs, e, e2: decay_t * xs - sigma_t * phi_1 * e - (1.0 / r2) * sigma_t * phi_2 * (e2 - e),
        x,
        eps_s,
        eps_2,
    )
