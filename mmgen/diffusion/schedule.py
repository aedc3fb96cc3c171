"""The noise schedule: linear betas, the official respacing, and the per-step quantities samplers need.

Follows guided-diffusion / MM-Diffusion exactly (official-checkpoints.md §5): 1000 linear betas in float64,
respacing by `space_timesteps` (with Python's banker's rounding), spaced betas recomputed from the kept
ᾱ values, and the FIXED_LARGE / LEARNED_RANGE variances. Everything is float64 here; samplers cast the
per-step scalars to their working dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from mmgen.errors import ConfigError

T_TRAIN = 1000  # training diffusion steps of every released model


def linear_betas(steps: int = T_TRAIN) -> torch.Tensor:
    """The linear schedule, scaled so that any step count spans the same noise range as 1000 steps."""
    scale = 1000 / steps
    start, stop = scale * 1e-4, scale * 0.02
    # numpy.linspace's arithmetic (start + i·step, exact endpoint), which the official float64 values come
    # from; torch.linspace rounds differently in the last bit.
    betas = start + torch.arange(steps, dtype=torch.float64) * ((stop - start) / max(steps - 1, 1))
    betas[-1] = stop
    return betas


def space_timesteps(num_timesteps: int, spec: str) -> list[int]:
    """The original timesteps kept by a respacing spec, sorted ascending.

    "ddimN": the multiples of the smallest stride giving exactly N steps (ddim10 → 0, 100, …, 900).
    "N" or "a,b,…": the range split into equal sections (the first ones one longer), each sampled at
    evenly spaced, round()-ed positions ("25" → 0, 42, 83, …, 999). "": every step.
    """
    if spec == "":
        return list(range(num_timesteps))
    if spec.startswith("ddim"):
        wanted = _positive_int(spec[4:], spec)
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == wanted:
                return list(range(0, num_timesteps, stride))
        raise ConfigError(
            f"respacing {spec!r}: no integer stride gives exactly {wanted} of {num_timesteps} steps"
        )
    counts = [_positive_int(part, spec) for part in spec.split(",")]
    size, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        section = size + (1 if i < extra else 0)
        if count > section:
            raise ConfigError(f"respacing {spec!r}: cannot take {count} steps from a section of {section}")
        stride = 1.0 if count <= 1 else (section - 1) / (count - 1)
        # A running float sum and Python's half-to-even round(), exactly as the official code: the
        # kept steps of e.g. "25" depend on both.
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += section
    return sorted(set(kept))


def logsnr_timesteps(alphas_cumprod: torch.Tensor, count: int) -> list[int]:
    """`count` timesteps from 0 to T−1 evenly spaced in log-SNR λ = log(√ᾱ/√(1−ᾱ)), each rounded to the
    timestep of nearest λ (bumped where rounding collides near t = 0).

    mmgen's grid for DPM-Solver++: uniform steps in t (the official "N") leave a single step for the last
    ~50 timesteps, where narrow data (quiet audio) takes its shape; even λ spacing puts several there.
    """
    total = len(alphas_cumprod)
    if count > total:
        raise ConfigError(f"respacing 'logsnr{count}': more steps than the {total} of the schedule")
    lam = 0.5 * torch.log(alphas_cumprod / (1.0 - alphas_cumprod))  # (T,) decreasing in t
    # from the noisy end, so that a single step starts at T−1
    targets = torch.linspace(lam[-1].item(), lam[0].item(), count, dtype=torch.float64).flip(0)
    kept: list[int] = []
    for target in targets.tolist():
        nearest = int((lam - target).abs().argmin())
        kept.append(max(nearest, kept[-1] + 1) if kept else nearest)
    return [min(t, total - count + k) for k, t in enumerate(kept)]


def _positive_int(text: str, spec: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(f"respacing {spec!r}: expected 'ddimN', 'N' or 'a,b,...' with positive integers")
    return int(text)


@dataclass(frozen=True, eq=False)
class Schedule:
    """A (possibly respaced) discrete schedule. Index k = 0 … K−1 is a respaced step, noisiest last;
    `timesteps[k]` is the original training timestep the network receives. Everything derives from the
    spaced betas the way the official code derives it, so the float64 values match it bit for bit."""

    timesteps: torch.Tensor  # (K,) int64, ascending original timesteps
    betas: torch.Tensor  # (K,) float64, β'_k = 1 − ᾱ(t_k) / ᾱ(t_{k−1}): the noise added between kept steps

    @classmethod
    def respaced(cls, spec: str = "", betas: torch.Tensor | None = None) -> Schedule:
        """Keep the steps of `spec` of `betas` (default: the linear 1000-step schedule): an official spec
        (see space_timesteps) or mmgen's "logsnrN" (see logsnr_timesteps)."""
        betas = linear_betas() if betas is None else betas.to(torch.float64)
        full = torch.cumprod(1.0 - betas, dim=0)
        if spec.startswith("logsnr"):
            kept_list = logsnr_timesteps(full, _positive_int(spec[6:], spec))
        else:
            kept_list = space_timesteps(len(betas), spec)
        kept = torch.tensor(kept_list, dtype=torch.int64)
        before = torch.cat([torch.ones(1, dtype=torch.float64), full[kept[:-1]]])
        return cls(timesteps=kept, betas=1.0 - full[kept] / before)

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def is_full(self) -> bool:
        """True when no step was skipped (timesteps are 0 … T−1)."""
        return bool(torch.equal(self.timesteps, torch.arange(len(self))))

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_k, (K,) float64."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        """ᾱ one respaced step earlier; 1 before the first step (clean data)."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

    @property
    def posterior_variance(self) -> torch.Tensor:
        """Var q(x_{k−1} | x_k, x_0) = β'·(1 − ᾱ_{k−1}) / (1 − ᾱ_k); 0 at k = 0."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_log_variance_clipped(self) -> torch.Tensor:
        """log of the posterior variance with its k = 0 zero replaced by the k = 1 value."""
        var = self.posterior_variance
        return torch.log(torch.cat([var[1:2], var[1:]]))

    @property
    def posterior_mean_coefs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(c0, ct) with E q(x_{k−1} | x_k, x_0) = c0·x_0 + ct·x_k."""
        ab, ab_prev, betas = self.alphas_cumprod, self.alphas_cumprod_prev, self.betas
        return betas * ab_prev.sqrt() / (1.0 - ab), (1.0 - ab_prev) * (1.0 - betas).sqrt() / (1.0 - ab)

    @property
    def fixed_large_log_variance(self) -> torch.Tensor:
        """FIXED_LARGE (the base models): log of [posterior variance at 1, β'_1, β'_2, …]."""
        var = torch.cat([self.posterior_variance[1:2], self.betas[1:]])
        return torch.log(var)

    def learned_range_log_variance(self, index: int, v: torch.Tensor) -> torch.Tensor:
        """LEARNED_RANGE (the SR models): the network's v ∈ [−1, 1] interpolates, in log space, between
        the clipped posterior variance (v = −1) and β' (v = 1)."""
        frac = (v + 1) / 2
        low = float(self.posterior_log_variance_clipped[index])
        high = float(torch.log(self.betas[index]))
        return frac * high + (1 - frac) * low

    def q_sample(self, x0: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """x_k = √ᾱ_k·x0 + √(1 − ᾱ_k)·noise: the forward process at respaced index k."""
        return noised(x0, float(self.alphas_cumprod[index]), noise)


def noised(x0: torch.Tensor, alpha_bar: float, noise: torch.Tensor) -> torch.Tensor:
    """The forward process at noise level ᾱ (any point, discrete or continuous)."""
    return alpha_bar**0.5 * x0 + (1.0 - alpha_bar) ** 0.5 * noise
