"""The training objective: eps-prediction MSE on both modalities, as the official MM-Diffusion code trains.

Official (multimodal_training_losses): one uniform timestep t per clip shared by video and audio, noise drawn
for the video then the audio, x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε with the coefficients computed in float64 and cast
to float32, and per clip loss = mean over the video's elements of (ε − ε̂)² + mean over the audio's elements;
the batch loss is the mean over clips. We do exactly that, with two options that default to the official
behaviour: per-modality weights (loss = w_v·L_v + w_a·L_a) and Min-SNR-γ weighting. Per-modality timesteps
("independent") draw the audio's t separately and pass it as `audio_timesteps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmgen.diffusion.schedule import Schedule
from mmgen.modal import Modal, each


@dataclass(frozen=True)
class Noising:
    """Everything random about one training step's noising: timesteps per modality and the noise."""

    timesteps: dict[str, torch.Tensor]  # modality → (B,) int64 original timesteps
    noise: Modal


def draw_noising(
    x0: Modal,
    generator: torch.Generator,
    noise_generator: torch.Generator,
    *,
    independent: bool,
    steps: int = 1000,
) -> Noising:
    """Uniform timesteps (from the CPU `generator`) and Gaussian noise (from `noise_generator`, which lives on
    the data's device). Draw order is fixed — t, then the audio's t if independent, then video noise, then
    audio noise — so a seed reproduces a run."""
    batch = x0["video"].shape[0]
    device = x0["video"].device
    t = torch.randint(0, steps, (batch,), generator=generator)
    t_audio = torch.randint(0, steps, (batch,), generator=generator) if independent else t
    noise = each(lambda x: torch.randn(x.shape, generator=noise_generator, device=device, dtype=x.dtype), x0)
    return Noising(timesteps={"video": t.to(device), "audio": t_audio.to(device)}, noise=noise)


def _per_clip(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) float64 schedule value as a float32 tensor broadcastable against `like` (B, ...)."""
    return values.to(device=like.device, dtype=torch.float32).view(-1, *[1] * (like.dim() - 1))


def noisy_inputs(x0: Modal, noising: Noising, schedule: Schedule) -> Modal:
    """x_t per modality at that modality's timesteps."""

    def q_sample(x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.alphas_cumprod[t.cpu()]
        return _per_clip(alpha_bar.sqrt(), x) * x + _per_clip((1.0 - alpha_bar).sqrt(), x) * eps

    return each(q_sample, x0, noising.timesteps, noising.noise)


def snr_weight(
    t: torch.Tensor, schedule: Schedule, gamma: float | None, x0_cap: float | None = None
) -> torch.Tensor:
    """(B,) loss weights on the eps-MSE: 1 for the official objective; min(SNR, γ)/SNR for Min-SNR-γ, which
    stops the many low-noise steps from dominating the gradient; and with `x0_cap`, min(1/SNR, cap) where
    SNR < 1, i.e. the error of the implied clean sample (truncated).

    Why the last one: at high noise an eps error e becomes an x̂0 error e/√SNR, so an eps-MSE of 1e-4 at
    t = 900 still leaves x̂0 with noise of RMS ~0.6, and what the other modality says about x0 is nearly
    invisible in eps terms. Samplers start from exactly these steps; weighting them by their x0 error makes
    a small model get them right (it is a weighting of the same eps objective, so samplers are unchanged)."""
    alpha_bar = schedule.alphas_cumprod[t.cpu()]
    snr = alpha_bar / (1.0 - alpha_bar)
    weight = torch.ones_like(snr)
    if gamma is not None:
        weight = snr.clamp(max=gamma) / snr
    if x0_cap is not None:
        weight = weight * (1.0 / snr).clamp(min=1.0, max=x0_cap)
    return weight.to(device=t.device, dtype=torch.float32)


def eps_mse(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error per clip over all non-batch dimensions, in float32."""
    return (prediction.float() - noise.float()).pow(2).flatten(1).mean(dim=1)


def diffusion_loss(
    model: torch.nn.Module,
    x0: Modal,
    noising: Noising,
    schedule: Schedule,
    *,
    weights: dict[str, float],
    min_snr_gamma: float | None = None,
    x0_weight_cap: float | None = None,
    shift_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(weighted scalar loss to minimise, its detached per-modality parts for the log and the bar). Each part is
    the modality's term as it enters the loss (its weight × the Min-SNR/x0-weighted batch-mean MSE), so the parts
    add up to the loss shown beside them; with the official objective (weights 1, no SNR weighting) a part is the
    modality's plain eps-MSE."""
    x_t = noisy_inputs(x0, noising, schedule)
    t = noising.timesteps
    audio_t = None if t["audio"] is t["video"] else t["audio"]
    video_eps, audio_eps = model(
        x_t["video"], x_t["audio"], t["video"], audio_timesteps=audio_t, generator=shift_generator
    )
    per_clip = each(eps_mse, {"video": video_eps, "audio": audio_eps}, noising.noise)
    parts = {
        k: weights.get(k, 1.0) * (snr_weight(t[k], schedule, min_snr_gamma, x0_weight_cap) * per_clip[k]).mean()
        for k in per_clip
    }
    return sum(parts.values()), {k: v.detach() for k, v in parts.items()}
