"""Multi-head attention over packed qkv tensors through scaled_dot_product_attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def qkv_attention(qkv: torch.Tensor, num_heads: int, legacy_order: bool = False) -> torch.Tensor:
    """Self-attention over tokens. qkv (B, 3·C, T) → (B, C, T).

    Any layout of qkv; the result is token-major in memory (channels innermost). Channel layout of qkv: [q | k | v], each split into heads (the MM-UNet's single-modal attention), or with
    `legacy_order` [head0: q,k,v | head1: q,k,v | …] (guided-diffusion's, used by the SR U-Net). The official
    scaling ch^(-1/4) on q and on k equals SDPA's default 1/sqrt(ch)."""
    batch, width, length = qkv.shape
    ch = width // (3 * num_heads)
    if legacy_order:
        split = qkv.reshape(batch, num_heads, 3, ch, length).transpose(1, 2)  # (B, 3, heads, ch, T)
    else:
        split = qkv.reshape(batch, 3, num_heads, ch, length)
    # SDPA's fused (flash) kernels need 4-D (B, heads, T, ch) with unit stride on ch; otherwise it falls back
    # to the slow, memory-hungry math path. Token-major qkv (channels innermost) already has it: no copy.
    q, k, v = split.permute(1, 0, 2, 4, 3)
    if q.stride(-1) != 1:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, ch)
    return out.transpose(1, 2).reshape(batch, length, num_heads * ch).transpose(1, 2)  # token-major (B, C, T)
