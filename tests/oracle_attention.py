"""Slow, obviously faithful attention: the oracle for the fast paths (tests and benchmarks/forward.py).

Written straight from official-checkpoints.md §3.3–3.4: tokens in the official order, explicit index lists
per frame and per audio chunk, q and k each scaled by ch^(-1/4), an explicit softmax. `reference_attention`
runs a whole model with these in place of the fast SDPA paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from mmgen.models.cross_attention import CrossModalAttention
from mmgen.models.mm_layers import SelfAttention


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_dtype: torch.dtype | None
) -> torch.Tensor:
    """q (N, ch, Tq), k and v (N, ch, Tk), already scaled → (N, ch, Tq)."""
    weight = torch.einsum("nct,ncs->nts", q, k)
    weight = torch.softmax(weight.to(softmax_dtype or weight.dtype), dim=-1).to(weight.dtype)
    return torch.einsum("nts,ncs->nct", weight, v)


def _split_heads(qkv: torch.Tensor, num_heads: int) -> list[torch.Tensor]:
    """(B, 3C, T) laid out q|k|v then heads → q, k (each scaled by ch^-1/4) and v, each (B·heads, ch, T)."""
    b, width, length = qkv.shape
    ch = width // (3 * num_heads)
    q, k, v = (t.reshape(b * num_heads, ch, length) for t in qkv.chunk(3, dim=1))
    scale = ch**-0.25
    return [q * scale, k * scale, v]


def reference_self_attention(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Official single-modal attention: (B, 3C, T) → (B, C, T), softmax in float32."""
    b, width, length = qkv.shape
    return _attend(*_split_heads(qkv, num_heads), softmax_dtype=torch.float32).reshape(b, width // 3, length)


def reference_rs_mma(
    qkv_video: torch.Tensor, qkv_audio: torch.Tensor, num_heads: int, window: int, shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """RS-MMA with a loop over frames and audio chunks. qkv_video (B, 3C, F, HW), qkv_audio (B, 3C, L)
    → video (B, C, F, HW), audio (B, C, L)."""
    b, width, frames, hw = qkv_video.shape
    length = qkv_audio.shape[-1]
    video_tokens = frames * hw
    # The official token sequence: video frame-major (f h w), then audio.
    qkv = torch.cat([qkv_video.reshape(b, width, video_tokens), qkv_audio], dim=2)
    q, k, v = _split_heads(qkv, num_heads)
    apf = length // frames
    out = torch.zeros_like(q)

    for i in range(frames):
        queries = list(range(i * hw, (i + 1) * hw))
        keys = [video_tokens + ((i + shift) * apf + j) % length for j in range(window * apf)]
        out[:, :, queries] = _attend(q[:, :, queries], k[:, :, keys], v[:, :, keys], softmax_dtype=None)

    for i in range(frames):
        end = (i + 1) * apf if i < frames - 1 else length  # the last chunk takes the remaining tokens
        queries = [video_tokens + t for t in range(i * apf, end)]
        window_frames = [(i + shift + m) % frames for m in range(window)]
        keys = [f * hw + p for f in window_frames for p in range(hw)]
        out[:, :, queries] = _attend(q[:, :, queries], k[:, :, keys], v[:, :, keys], softmax_dtype=None)

    out = out.reshape(b, width // 3, video_tokens + length)
    return out[:, :, :video_tokens].reshape(b, width // 3, frames, hw), out[:, :, video_tokens:]


@contextmanager
def reference_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` with the reference attention in every self- and cross-attention block."""
    swapped = []
    for module in model.modules():
        if isinstance(module, SelfAttention):
            module.attention = reference_self_attention
        elif isinstance(module, CrossModalAttention):
            module.attention = reference_rs_mma
        else:
            continue
        swapped.append(module)
    try:
        yield model
    finally:
        for module in swapped:
            del module.attention
