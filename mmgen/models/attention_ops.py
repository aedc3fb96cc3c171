"""Multi-head attention over packed qkv tensors through scaled_dot_product_attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def qkv_attention(qkv: torch.Tensor, num_heads: int, legacy_order: bool = False) -> torch.Tensor:
    """Self-attention over tokens. qkv (B, 3·C, T) → (B, C, T).

    Channel layout of qkv: [q | k | v], each split into heads (the MM-UNet's single-modal attention), or with
    `legacy_order` [head0: q,k,v | head1: q,k,v | …] (guided-diffusion's, used by the SR U-Net). The official
    scaling ch^(-1/4) on q and on k equals SDPA's default 1/sqrt(ch)."""
    batch, width, length = qkv.shape
    ch = width // (3 * num_heads)
    if legacy_order:
        q, k, v = qkv.reshape(batch * num_heads, 3 * ch, length).split(ch, dim=1)
    else:
        q, k, v = (t.reshape(batch * num_heads, ch, length) for t in qkv.chunk(3, dim=1))
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B·h, T, ch)
    return out.transpose(1, 2).reshape(batch, num_heads * ch, length)
