"""How much each noise level counts in training. The official objective weights every step alike; Min-SNR-γ
turns the many near-clean steps down; x0_weight_cap turns the very noisy steps up to the error of the clean
sample they imply — the error a sampler inherits when it starts from pure noise (the demo model's stage 2)."""

from __future__ import annotations

import torch

from mmgen.diffusion.schedule import Schedule
from mmgen.train.objective import snr_weight

SCHEDULE = Schedule.respaced("")
T = torch.tensor([10, 200, 600, 950])


def snr(t: torch.Tensor) -> torch.Tensor:
    alpha_bar = SCHEDULE.alphas_cumprod[t]
    return alpha_bar / (1 - alpha_bar)


def test_the_official_objective_weights_every_step_alike():
    assert torch.equal(snr_weight(T, SCHEDULE, None), torch.ones(4))


def test_min_snr_turns_only_the_near_clean_steps_down():
    weights = snr_weight(T, SCHEDULE, 5.0).double()
    assert weights[0] < 0.02  # t = 10: SNR ~ 450
    assert torch.allclose(weights[0], 5.0 / snr(T[:1])[0], rtol=1e-6)
    assert torch.equal(weights[2:], torch.ones(2, dtype=torch.float64))  # noisy steps: as the official loss


def test_the_x0_cap_weights_noisy_steps_by_their_clean_sample_error_up_to_the_cap():
    plain, capped = snr_weight(T, SCHEDULE, 5.0), snr_weight(T, SCHEDULE, 5.0, x0_cap=50.0)
    ratio = snr(T)
    assert (ratio[:2] >= 1).all() and torch.equal(capped[:2], plain[:2])  # SNR ≥ 1: unchanged
    assert 1 < 1 / ratio[2] < 50 and torch.allclose(capped[2].double(), 1 / ratio[2], rtol=1e-6)
    assert capped[3] == 50.0  # t = 950: 1/SNR is in the thousands


def test_a_weight_of_one_over_snr_turns_the_eps_error_into_the_x0_error():
    """What the weight means: x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ, so |x̂0 − x0|² = |ε̂ − ε|²/SNR."""
    t = torch.tensor([600])
    alpha_bar = float(SCHEDULE.alphas_cumprod[t])
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(1000, generator=generator) * 2 - 1, torch.randn(1000, generator=generator)
    eps_hat = eps + 0.01 * torch.randn(1000, generator=generator)
    x_t = alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * eps
    x0_hat = (x_t - (1 - alpha_bar) ** 0.5 * eps_hat) / alpha_bar**0.5
    weighted = snr_weight(t, SCHEDULE, None, x0_cap=1e9) * (eps_hat - eps).square().mean()
    assert torch.allclose(weighted, (x0_hat - x0).square().mean(), rtol=1e-3)
