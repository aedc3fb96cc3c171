"""Primitives shared by both U-Nets: the sinusoidal timestep embedding, fp32 GroupNorm in any layout, and the
channels-last layout the fast path keeps its images and frames in."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.broadcasting import broadcasts_to


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) integer or float timesteps → (B, dim), [cos | sin] (cos half first,
    as the official code orders it)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Sequences (N, C, L), images (N, C, H, W) or frames (B, F, C, H, W) stored channels-last (C innermost),
    shapes unchanged: the layout in which oneDNN's convolutions run fastest on CPU (≈1.5× in fp32, ≈6× in bf16
    with AMX, and no reorder copies), and which every layer of both U-Nets keeps, so no copies are made
    between the norms, the convolutions and the attention's projections."""
    if x.dim() == 5:
        return channels_last(x.flatten(0, 1)).unflatten(0, x.shape[:2])
    return x.movedim(1, -1).contiguous().movedim(-1, 1)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off on `device_type`, for what must run in float32 inside an autocast region; nothing to
    switch off where this torch has no autocast for that device: Apple MPS before torch 2.5, where even
    `torch.autocast("mps", enabled=False)` raises ("unsupported scalarType"), and the meta device."""
    if torch.amp.autocast_mode.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def kernel_2d(weight: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """A 1-D conv weight (C', C, k) as the 2-D conv weight of the same memory with a size-1 kernel axis at
    `unit_dim` (2: (C', C, 1, k); 3: (C', C, k, 1)), strided as the layout it has: a channels-last weight
    stays channels-last to torch's layout guess. A plain unsqueeze(3) gives the new axis stride 1, which reads
    as "not channels-last" beside a channels-last input; where torch then takes its fallback CPU convolution
    (fp32, one sample, small frames), its backward fails ("slow_conv2d: grad_weight must be contiguous")."""
    return weight.movedim(1, -1).unsqueeze(unit_dim - 1).movedim(-1, 1)


def group_norm(
    x: torch.Tensor,
    norm: nn.GroupNorm,
    channel_dim: int = 1,
    modulation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """`norm` over x's channel axis `channel_dim`, statistics per sample and group of channels over every
    other axis, computed in float32 (with autocast off) and returned in x's dtype; a channels-first
    (N, C, …) or channels-last x keeps its layout, any other comes back channels-last. `modulation` (scale,
    shift), each (N, C): the timestep's y·(1 + scale) + shift after the norm.

    A channels-last input is handed to torch's GroupNorm as the channels-last 4-D view (B, C, N, 1) of
    itself, so nothing is copied or permuted (a video (B, F, C, H, W) is normalised over all its frames at
    once, as the official permute to (B, C, F, H, W) does). On CPU a bf16 input goes in as it is: the kernel
    computes in float32 and only rounds its output (4× faster than casting the input to float32 first). For
    one sample the modulation is a per-channel affine like the norm's own, so the two are folded into one
    (float32, no pass over the activations of its own)."""
    groups, channels = norm.num_groups, x.shape[channel_dim]
    weight, bias, late = norm.weight, norm.bias, modulation
    if modulation is not None and x.shape[0] == 1:
        factor, shift = 1 + modulation[0][0].float(), modulation[1][0].float()
        weight, bias, late = weight * factor, torch.addcmul(shift, bias, factor), None
    mixed_ok = x.dtype == torch.float32 or (x.device.type == "cpu" and x.dtype == torch.bfloat16)
    xin = x if mixed_ok else x.float()
    with autocast_off(x.device.type):
        if channel_dim == 1 and xin.is_contiguous():
            y = F.group_norm(xin, groups, weight, bias, norm.eps).to(x.dtype)
        else:
            tokens = xin.movedim(channel_dim, -1)  # a view when x is channels-last
            rows = tokens.reshape(x.shape[0], -1, 1, channels).permute(0, 3, 1, 2)  # (B, C, N, 1) channels-last
            y = F.group_norm(rows, groups, weight, bias, norm.eps)
            y = y.permute(0, 2, 3, 1).reshape(tokens.shape).movedim(-1, channel_dim).to(x.dtype)
    if late is not None:  # several samples, each its own modulation: one pass, one rounding
        scale, shift = (per_channel(t.to(y.dtype), y, channel_dim) for t in late)
        y = torch.addcmul(shift, y, 1 + scale)
    return y


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups computed in float32 and cast back (stable under fp16/bf16 autocast), in the
    input's layout."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(32, channels, eps=eps)

    def forward(self, x: torch.Tensor, modulation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return group_norm(x, self, modulation=modulation)


class NormSiLU(nn.SiLU):
    """The SiLU right after a norm: it owns the norm's fresh output, so without autograd it works in place
    (no new activation-sized tensor per block, less memory and one pass less); with autograd, nn.SiLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x, inplace=not torch.is_grad_enabled())


def add_residual(x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """x + update, where `update` is a layer's fresh output that nobody else holds: without autograd the sum
    is written into it (one activation-sized tensor less at each block's peak) when it has the sum's shape
    and dtype already."""
    fits = broadcasts_to(x.shape, update.shape)
    if not torch.is_grad_enabled() and fits and torch.result_type(x, update) == update.dtype:
        return update.add_(x)
    return x + update


def channel_axis(x: torch.Tensor) -> int:
    """Channels sit at dim 2 of a video (B, F, C, H, W) and at dim 1 of everything else (N, C, …)."""
    return 2 if x.dim() == 5 else 1


def per_channel(values: torch.Tensor, like: torch.Tensor, channel_dim: int | None = None) -> torch.Tensor:
    """(B, C) values shaped to broadcast along the channel axis of `like` (by default channel_axis(like))."""
    shape = [values.shape[0]] + [1] * (like.dim() - 1)
    shape[channel_axis(like) if channel_dim is None else channel_dim] = values.shape[1]
    return values.view(shape)


def channels_to_end(x: torch.Tensor) -> torch.Tensor:
    """(…, C, *spatial) → (…, *spatial, C): a view without copying for the channels-last layout, for the
    matmuls that mix channels per pixel or token."""
    return x.movedim(channel_axis(x), -1)


def channels_back(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Undo channels_to_end for a result y (…, *spatial, C') of an input shaped like `like`."""
    return y.movedim(-1, channel_axis(like))


def mix_channels(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1×1(×1) convolution (weight (C', C, 1, …)) as one matmul over channels-last pixels or tokens: for a
    channels-last input no copy, and the output is channels-last too."""
    return channels_back(_linear(channels_to_end(x), weight.flatten(1), bias), x)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear over the last axis as one 2-D matmul: F.linear on a strided N-D input falls back to a batched
    matmul against a copy of the weight per batch entry; this copies the input at most."""
    rows = x.reshape(-1, x.shape[-1])
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else rows.dtype
    fused = rows.is_cpu and dtype == torch.bfloat16 and bias is not None and _fused_bias_linear()
    if fused and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad)):
        out = fused(rows.to(dtype), weight.to(dtype), bias.to(dtype), "none", [], "")
    else:
        out = F.linear(rows, weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


@functools.cache
def _fused_bias_linear() -> Callable | None:
    """oneDNN's matmul with the bias added inside it (the op torch.compile lowers a CPU linear to), if this
    torch has it and it gives what F.linear gives. A bf16 addmm first copies the bias into every output row and
    then accumulates onto it, one more pass over the output: this is 1.2–3× faster for the U-Nets' projections,
    with bitwise the same result. Inference only (it has no backward)."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    x, weight, bias = (torch.linspace(-1, 1, n, dtype=torch.bfloat16).view(shape) for n, shape in
                       ((24, (4, 6)), (18, (3, 6)), (3, (3,))))  # fmt: skip
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            same = torch.equal(op(x, weight, bias, "none", [], ""), F.linear(x, weight, bias))
    except RuntimeError:  # a build or CPU whose oneDNN has no bf16 matmul
        return None
    return op if same else None
