"""The one interface samplers see: a denoiser maps (x_t, timesteps) to the predicted noise per modality.

Adapters wrap each network so no sampler knows which model it runs: the coupled MM-UNet returns
(video eps, audio eps); the SR U-Net returns eps ⊕ a learned-range variance value per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mmgen.diffusion.schedule import Schedule
from mmgen.modal import Modal


@dataclass(frozen=True)
class Prediction:
    """What a denoiser returns: eps per modality, and for learned-range models the variance value v ∈ [−1, 1]
    per modality (None: the schedule's FIXED_LARGE variance applies)."""

    eps: Modal
    var_values: Modal | None = None


# (x_t per modality, original training timesteps (B,) int64) → Prediction
Denoiser = Callable[[Modal, torch.Tensor], Prediction]


def mmunet_denoiser(
    model: torch.nn.Module, shift: int | None = None, generator: torch.Generator | None = None
) -> Denoiser:
    """The coupled video/audio U-Net as a denoiser of {"video": (B,F,C,H,W), "audio": (B,1,L)}.
    `shift` fixes the RS-MMA window shift; otherwise it is drawn from `generator` on every call."""

    def denoise(x: Modal, t: torch.Tensor) -> Prediction:
        video, audio = model(x["video"], x["audio"], t, shift=shift, generator=generator)
        return Prediction(eps={"video": video.to(x["video"].dtype), "audio": audio.to(x["audio"].dtype)})

    return denoise


def srunet_denoiser(model: torch.nn.Module, low_res: torch.Tensor) -> Denoiser:
    """The per-frame SR U-Net as a denoiser of {"image": (N,3,H,W)} conditioned on `low_res` (N,3,h,w)."""

    def denoise(x: Modal, t: torch.Tensor) -> Prediction:
        image = x["image"]
        out = model(image, t, low_res).to(image.dtype)  # (N, 6, H, W): eps ⊕ v
        channels = image.shape[1]
        return Prediction(eps={"image": out[:, :channels]}, var_values={"image": out[:, channels:]})

    return denoise


def zero_mean(denoiser: Denoiser, keys: tuple[str, ...]) -> Denoiser:
    """`denoiser` with the clean sample it implies for each of `keys` projected to zero mean along the last
    axis (per clip and channel) — what clip_denoised does for the range [-1, 1], here for a DC offset, which
    real audio does not carry.

    The mean of N(0, I) noise over L samples has std 1/√L, a direction a small model may not learn to call
    noise; a sampler then scales what it reads as signal by up to 1/√ᾱ into an offset over the whole clip.
    The eps returned is the one that implies the projected clean sample, so every sampler and guidance mode
    works unchanged.
    """
    alphas_cumprod = Schedule.respaced("").alphas_cumprod  # ᾱ at the original timesteps the denoiser gets

    def denoise(x: Modal, t: torch.Tensor) -> Prediction:
        pred = denoiser(x, t)
        eps = dict(pred.eps)
        for key in keys:
            if key not in eps:
                continue
            ab = alphas_cumprod[t.cpu()].to(device=eps[key].device, dtype=torch.float32)
            ab = ab.view(-1, *[1] * (eps[key].dim() - 1))
            clean = (x[key].float() - (1 - ab).sqrt() * eps[key].float()) / ab.sqrt()
            offset = clean.mean(dim=-1, keepdim=True)  # x̂0 − offset has zero mean: eps moves by offset·√(ᾱ/(1−ᾱ))
            eps[key] = (eps[key].float() + offset * (ab / (1 - ab)).sqrt()).to(eps[key].dtype)
        return Prediction(eps=eps, var_values=pred.var_values)

    return denoise
