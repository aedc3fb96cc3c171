"""Zero-shot conditional sampling (MM-Diffusion §3.4): generate the unknown modality given a known one.

A `Condition` says which values are known (a whole modality, or the masked part of one, e.g. the audio
overlapping the previous window). The shared sampling loop hands every step to a `Guide`, so every
sampler is conditioned the same way:

* replacement: before the step, the known part of x_t is reset to q(known, t) with a noise drawn once
  (the same at every step, as the official loop), so the model sees a consistent noisy condition;
* gradient: additionally the step is taken with gradients on x_t, and the unknown part of the result is
  pushed down the gradient of the known part's mismatch after the step (the paper's λ-weighted update).

Video-to-audio and audio-to-video are the same code: only the keys of `known` differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from mmgen.broadcasting import broadcasts_to
from mmgen.diffusion.schedule import noised
from mmgen.modal import Modal

GuidanceMode = Literal["replacement", "gradient"]
LOSS_SCALE = 2.0**20  # the official fp16 loss scale; gradient guidance divides it out again

# (x, position in the loop, previous step's x0 or None) → (x_next, x0)
StepFn = Callable[[Modal, int, "Modal | None"], "tuple[Modal, Modal]"]


@dataclass(frozen=True, eq=False)
class Condition:
    """Known clean values to sample around.

    known: clean values of the known modalities (a subset of the sample's keys), broadcastable to the sample.
    mask: per known key, 1 where known and 0 where generated, broadcastable to the sample; a key without a
        mask (or mask None) is known entirely.
    mode / scale: "replacement", or "gradient" with scale λ.
    noise: the fixed noise n_cond used to noise the known values at every step; None uses the sample's x_T
        values of those modalities, exactly as the official loop does.
    """

    known: Modal
    mask: Modal | None = None
    mode: GuidanceMode = "replacement"
    scale: float = 0.0
    noise: Modal | None = None

    def __post_init__(self):
        if self.mode not in ("replacement", "gradient"):
            raise ValueError(f"guidance mode must be 'replacement' or 'gradient', not {self.mode!r}")
        if self.mask is not None and not set(self.mask) <= set(self.known):
            raise ValueError(f"mask keys {sorted(self.mask)} are not all known keys {sorted(self.known)}")

    def mask_of(self, key: str) -> torch.Tensor | None:
        return None if self.mask is None else self.mask.get(key)

    def check(self, x_T: Modal) -> None:
        """Fail early, with names, when the condition does not fit the sample."""
        for key, value in self.known.items():
            if key not in x_T:
                raise ValueError(f"known modality {key!r} is not generated (have {sorted(x_T)})")
            shape = tuple(x_T[key].shape)
            for what, tensor in (("known values", value), ("mask", self.mask_of(key))):
                if tensor is not None and not broadcasts_to(tuple(tensor.shape), shape):
                    raise ValueError(f"{what} of {key!r} {tuple(tensor.shape)} do not fit the sample {shape}")
            if self.noise is not None and self.noise[key].shape != x_T[key].shape:
                raise ValueError(f"condition noise for {key!r} has shape {tuple(self.noise[key].shape)}")

    def fixed_noise(self, x_T: Modal) -> Modal:
        return {k: (x_T[k] if self.noise is None else self.noise[k]) for k in self.known}

    def replace(self, x: Modal, alpha_bar: float, noise: Modal) -> Modal:
        """x with its known part set to the known values noised to level ᾱ (ᾱ = 1: the clean values)."""
        out = dict(x)
        for key, value in self.known.items():
            target = noised(value, alpha_bar, noise[key]) if alpha_bar < 1.0 else value
            out[key] = _blend(target, x[key], self.mask_of(key))
        return out

    def mismatch(self, x: Modal, alpha_bar: float, noise: Modal) -> torch.Tensor:
        """Σ over known modalities of the batch mean of each sample's mean squared error over its known
        part."""
        loss = x[next(iter(x))].new_zeros(())
        for key, value in self.known.items():
            err = (x[key] - noised(value, alpha_bar, noise[key])) ** 2
            mask = self.mask_of(key)
            weight = torch.ones_like(err) if mask is None else mask.to(err.dtype).expand_as(err)
            per_sample = (weight * err).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-12)
            loss = loss + per_sample.mean()
        return loss

    def fully_known(self, key: str) -> bool:
        return key in self.known and self.mask_of(key) is None

    def generated_part(self, key: str) -> float | torch.Tensor:
        """The weight of the generated part of a modality that is not fully known: 1 where generated."""
        mask = self.mask_of(key)
        return 1.0 if mask is None else 1.0 - mask


def _blend(known: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.broadcast_to(known, generated.shape).clone()
    return mask * known + (1 - mask) * generated


class Guide:
    """Conditions one sampling run: holds the condition and its fixed noise, and wraps each step."""

    def __init__(self, condition: Condition, x_T: Modal):
        condition.check(x_T)
        self.condition = condition
        self.noise = condition.fixed_noise(x_T)

    def step(
        self,
        step_fn: StepFn,
        x: Modal,
        i: int,
        prev_x0: Modal | None,
        levels: tuple[float, float],
        last: bool,
    ) -> tuple[Modal, Modal]:
        """One sampler step between noise levels (ᾱ, ᾱ_next), conditioned."""
        cond, (alpha_bar, alpha_bar_next) = self.condition, levels
        x = cond.replace(x, alpha_bar, self.noise)
        if cond.mode == "replacement" or cond.scale == 0.0 or last:
            # The official update is multiplied by 1[t ≠ 0]: the final step is never pushed.
            return step_fn(x, i, prev_x0)
        pushed = [k for k in x if not cond.fully_known(k)]
        with torch.enable_grad():
            inputs = {k: v.detach().requires_grad_(k in pushed) for k, v in x.items()}
            x_next, x0 = step_fn(inputs, i, prev_x0)
            loss = cond.mismatch(x_next, alpha_bar_next, self.noise)
            # Scaled so the backward through a half-precision model does not underflow (the mean over ~10^5
            # elements makes ∂loss/∂eps ~10^-6), and unscaled again below: a power of two, so exact in fp32.
            scaled = torch.autograd.grad(LOSS_SCALE * loss, [inputs[k] for k in pushed], allow_unused=True)
        # Official MM-Diffusion scales the loss by 2**20 in fp16 too but never divides it out again, so its
        # released λ = 3 acts as 3·2**20 there and as 3 in fp32. Here λ means the same in every precision; the
        # `paper` preset passes the official effective value explicitly.
        out = {k: v.detach() for k, v in x_next.items()}
        for key, grad in zip(pushed, scaled, strict=True):
            if grad is not None:
                grad = grad / LOSS_SCALE
                out[key] = out[key] - cond.scale * alpha_bar**0.5 * cond.generated_part(key) * grad
        return out, {k: v.detach() for k, v in x0.items()}

    def finish(self, x: Modal) -> Modal:
        """The final sample with its known part equal to the clean known values (the official loop returns
        q_sample(known, 0, noise) there instead, i.e. the known values with a trace of noise)."""
        return self.condition.replace(x, 1.0, self.noise)
