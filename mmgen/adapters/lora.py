"""Low-rank adapters (LoRA, Hu et al. 2021) on the weights of an mm-unet, as weight parametrizations.

An adapter adds `scale · B @ A` (A: rank × fan-in, B: fan-out × rank, scale = alpha / rank) to a layer's
weight, reshaped to the weight's shape (a conv's fan-in is in_channels × kernel taps). It is applied to the
WEIGHT (torch.nn.utils.parametrize), not around the layer's forward, because mmgen's fast paths read conv
weights directly — the frame conv runs as one matmul of its taps, a 1×1×1 Conv3d as a conv2d, RS-MMA's q/k/v
as F.conv1d over all frames. peft wraps the module instead (and its parameter-targeting mode documents that
`module.weight` then does NOT include the adapter), so under peft those paths would silently ignore the
adapter; here every path, fast or official, sees W + ΔW. It also keeps transformers/accelerate out of mmgen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from mmgen.adapters.spec import TARGETS, LoraSpec, Targets
from mmgen.errors import UsageError, in_callers_words

# Which layers each `--lora-targets` choice adapts, by the official module names (official-checkpoints.md):
# attention = self-attention q/k/v and output projections and RS-MMA's q/k/v and output projections;
# conv = the resblocks' own convolutions (in/out layers); all = every weight matrix or kernel.
_ATTENTION = re.compile(r"(^|\.)(qkv|proj_out|a_qkv|v_qkv)$|(^|\.)(video|audio)_proj_out\.(video|audio)_conv$")
_CONV = re.compile(r"(^|\.)(video|audio)_(in|out)_layers\.\d+\.")
_ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def selects(targets: Targets, name: str) -> bool:
    """Whether the module called `name` is adapted under `targets`."""
    if targets == "all":
        return True
    if _ATTENTION.search(name):
        return True
    return targets == "attention+conv" and bool(_CONV.search(name))


def target_modules(model: nn.Module, targets: Targets) -> dict[str, nn.Module]:
    """The layers `targets` names in `model`, by module name (only layers with a weight of ≥ 2 dims)."""
    if targets not in TARGETS:
        named = in_callers_words("--lora-targets", "lora_targets")
        raise UsageError(f"{named}: {targets!r} is not one of {', '.join(TARGETS)}")
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _ADAPTABLE) and selects(targets, name)
    }


def useful_rank(weight: torch.Tensor) -> int:
    """The largest rank a delta of `weight` can have: min(fan-out, fan-in). A higher rank adds nothing."""
    return min(weight.shape[0], math.prod(weight.shape[1:]))


def check_rank(spec: LoraSpec, layers: dict[str, nn.Module]) -> None:
    """Refuse a rank above every adapted layer's useful rank, before its adapters are allocated (rank × fan-in
    floats each: `--lora 1000000` on the demo asked for 22 GB). The bound is the largest useful rank over the
    layers, not the smallest: one rank serves every layer (an adapter file has one), and with
    `--lora-targets all` the demo's audio output convolution (1 channel) would otherwise allow only rank 1. A
    layer narrower than the rank just carries directions it cannot use."""
    largest = max(useful_rank(module.weight) for module in layers.values())
    if spec.rank > largest:
        rank, targets = in_callers_words("--lora", "lora_rank"), in_callers_words("--lora-targets", "lora_targets")
        raise UsageError(
            f"{rank} {spec.rank} is more than the largest useful rank {largest} of this model for {targets} "
            f"{spec.targets} (its widest adapted layer's min(fan-in, fan-out))",
            hint=f"choose {rank} {largest} or less",
        )


class LowRankDelta(nn.Module):
    """The parametrization W ↦ W + scale · (B @ A).view_as(W). B starts at zero, so a new adapter is a no-op."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float):
        super().__init__()
        fan_out, fan_in = weight.shape[0], math.prod(weight.shape[1:])
        self.lora_A = nn.Parameter(torch.empty(rank, fan_in, device=weight.device, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(fan_out, rank, device=weight.device, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises a weight of that shape
        self.scale = alpha / rank

    def delta(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale  # (fan_out, fan_in)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The sum keeps the weight's strides, size-1 axes included: a conv weight is kept with exactly the
        channels-last ones (models.storage) and torch picks a convolution's kernel, and its output's layout, from
        them, so a new adapter changes nothing, bitwise. (An elementwise op would hand back normalised strides on
        the size-1 axes of a 1×1 kernel; there they address the same elements.)"""
        delta = self.delta().view(weight.shape).to(weight.dtype)
        if delta.stride() != weight.stride():
            delta = torch.empty_like(weight).copy_(delta)  # in the weight's memory order
        out = weight + delta
        return out if out.stride() == weight.stride() else out.as_strided(weight.shape, weight.stride())


def attach(model: nn.Module, spec: LoraSpec) -> list[nn.Parameter]:
    """Freeze every weight of `model` and give each targeted layer a trainable adapter; returns the adapter
    parameters (what the optimizer trains). The model's forward is unchanged until the adapters move."""
    layers = target_modules(model, spec.targets)
    if not layers:
        named = in_callers_words("--lora-targets", "lora_targets")
        raise UsageError(f"{named} {spec.targets}: the model has no such layers")
    check_rank(spec, layers)
    for p in model.parameters():
        p.requires_grad_(False)
    for module in layers.values():
        parametrize.register_parametrization(module, "weight", LowRankDelta(module.weight, spec.rank, spec.alpha))
    return [p for _, p in adapter_parameters(model)]


def deltas(model: nn.Module) -> Iterator[tuple[str, LowRankDelta]]:
    """(module name, its adapter) for every adapted layer, in module order."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, LowRankDelta):
                    yield name, p


def adapter_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The adapter tensors under their file names: `<module>.lora_A`, `<module>.lora_B`."""
    for name, delta in deltas(model):
        yield f"{name}.lora_A", delta.lora_A
        yield f"{name}.lora_B", delta.lora_B


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every adapter tensor, keyed as in an adapter file."""
    return {key: p.detach().to("cpu", torch.float32).clone() for key, p in adapter_parameters(model)}


def load_adapter_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved adapter tensors into an attached model (the same spec), strictly: every key, every shape."""
    own = dict(adapter_parameters(model))
    missing, unexpected = sorted(own.keys() - tensors.keys()), sorted(tensors.keys() - own.keys())
    if missing or unexpected:
        raise UsageError(f"adapter tensors do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for key, p in own.items():
            if tuple(tensors[key].shape) != tuple(p.shape):
                raise UsageError(f"adapter tensor {key}: shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}")
            p.copy_(tensors[key])
