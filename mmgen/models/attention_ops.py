"""Multi-head attention: the one entry point every attention of both U-Nets goes through."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Logits per chunk of the chunked bf16 path: ~2 MB of bf16, which stays in a core's L2. Measured on a Zen 4
# EPYC (avx512_bf16, 2 threads, 2026-12-01): 0.25–4 M logits all within 10 % of each other, 16 M 2× slower.
LOGITS_PER_CHUNK = 1 << 20
PROFILER_NAME = "mmgen::chunked_attention"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√ch)·v over (B, heads, T, ch) tensors (unit stride on ch; the result is token-major in
    memory, (B, T, heads, ch) underneath, as SDPA's CPU kernels return it)."""
    if _chunks_beat_sdpa(q, k, v):
        return chunked_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


@functools.cache
def _cpu_without_amx() -> bool:
    from mmgen.runtime.device import cpu_flags

    return "amx_bf16" not in cpu_flags()


def _chunks_beat_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """bf16 inference on a CPU whose bf16 products are AVX512-BF16's, not AMX's. There PyTorch's fused (flash)
    CPU kernel runs bf16 no faster than fp32 (~125–150 GFLOP/s against a bf16 matmul rate of ~400), while a
    matmul, a softmax and a matmul over cache-sized chunks ran the MM-UNet's attention shapes 1.4–2.4× faster
    (Zen 4 EPYC, 2026-12-01). With AMX, SDPA's kernel is AMX's (not measured against the chunks, so kept).
    Training keeps SDPA: its backward holds no logits."""
    return (
        q.device.type == "cpu"
        and q.dtype == torch.bfloat16
        and not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))
        and _cpu_without_amx()
    )


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA's result computed a cache-sized block of logits at a time. Approximate against SDPA in bf16: the
    logits are rounded to bf16 before the softmax (SDPA keeps them in fp32); on the released MM-UNet the bf16
    output stays ~1.5 % of max-abs from fp32, as SDPA's does. In fp32 it equals SDPA to float rounding."""
    batch, heads, length, ch = q.shape
    keys = k.shape[-2]
    out = q.new_empty(batch, length, heads, ch).transpose(1, 2)
    scale = ch**-0.5
    # the profiler's name for the block's matmuls and softmaxes (benchmarks/forward.py counts them as attention)
    with torch.profiler.record_function(PROFILER_NAME), torch.autocast(q.device.type, enabled=False):
        if length * keys * heads < LOGITS_PER_CHUNK:  # short sequences: several batch entries per call
            per = LOGITS_PER_CHUNK // (length * keys * heads)
            for b in range(0, batch, per):
                logits = torch.matmul(q[b : b + per] * scale, k[b : b + per].transpose(-1, -2))
                out[b : b + per] = torch.matmul(torch.softmax(logits, dim=-1), v[b : b + per])
            return out
        rows, zero = max(1, LOGITS_PER_CHUNK // keys), q.new_zeros(())
        for b in range(batch):  # 2-D slices, which mm reads and writes in their strided layout (bmm would copy)
            for h in range(heads):
                keys_t = k[b, h].t()
                for r in range(0, length, rows):
                    logits = torch.addmm(zero, q[b, h, r : r + rows], keys_t, beta=0, alpha=scale)
                    torch.mm(torch.softmax(logits, dim=-1), v[b, h], out=out[b, h, r : r + rows])
    return out


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
    out = attention(q, k, v)  # (B, heads, T, ch)
    return out.transpose(1, 2).reshape(batch, length, num_heads * ch).transpose(1, 2)  # token-major (B, C, T)
