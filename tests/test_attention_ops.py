"""Every attention of both U-Nets goes through `attention_ops.attention`: SDPA, or on a CPU whose bf16 is
AVX512-BF16 (no AMX) the chunked matmul–softmax–matmul, which must give SDPA's result in any layout the blocks
hand over."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmgen.models import attention_ops
from mmgen.models.attention_ops import chunked_attention


def token_major(batch: int, heads: int, length: int, ch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """q, k, v as the blocks hand them over: (B, heads, T, ch) views of one token-major qkv tensor."""
    qkv = torch.randn(batch, length, 3, heads, ch, generator=torch.Generator().manual_seed(seed))
    return tuple(qkv.permute(2, 0, 3, 1, 4))


@pytest.mark.parametrize(
    "batch, heads, queries, keys",
    [(6, 2, 16, 16), (2, 3, 300, 200), (1, 2, 40, 2000)],
    ids=["short: several batch entries per call", "long: blocks of query rows", "a key axis past the budget"],
)
def test_the_chunks_give_sdpas_result_in_the_layout_sdpa_returns(monkeypatch, batch, heads, queries, keys):
    monkeypatch.setattr(attention_ops, "LOGITS_PER_CHUNK", 4096)  # small, so every branch cuts its input
    q, _, _ = token_major(batch, heads, queries, 32, seed=0)
    _, k, v = token_major(batch, heads, keys, 32, seed=1)
    want = F.scaled_dot_product_attention(q, k, v)
    got = chunked_attention(q, k, v)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got.transpose(1, 2).is_contiguous()  # token-major, as the callers reshape it without a copy

    in_bf16 = chunked_attention(*(t.bfloat16() for t in (q, k, v)))
    assert in_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(in_bf16.float(), want, atol=3e-2, rtol=3e-2)


def test_overlapping_key_windows_give_sdpas_result():
    """RS-MMA's key windows are overlapping views (cross_attention.circular_windows): the chunks read them."""
    q, _, _ = token_major(4, 2, 64, 16, seed=2)
    g = torch.Generator().manual_seed(3)
    tokens = [torch.randn(128, 2, 16, generator=g) for _ in "kv"]  # (T, heads, ch), token-major
    windows = [t.unfold(0, 64, 16)[:4].permute(0, 1, 3, 2) for t in tokens]  # 4 windows of 64 keys, 16 apart
    assert windows[0].shape == (4, 2, 64, 16) and windows[0].stride(0) == 16 * windows[0].stride(2)
    torch.testing.assert_close(chunked_attention(q, *windows), F.scaled_dot_product_attention(q, *windows))


@pytest.mark.parametrize(
    "dtype, amx, needs_grad, chunks",
    [
        (torch.bfloat16, False, False, True),
        (torch.bfloat16, True, False, False),  # AMX: SDPA's own kernel
        (torch.float32, False, False, False),
        (torch.bfloat16, False, True, False),  # training: SDPA's backward holds no logits
    ],
)
def test_only_bf16_inference_on_a_cpu_without_amx_takes_the_chunks(monkeypatch, dtype, amx, needs_grad, chunks):
    monkeypatch.setattr(attention_ops, "_cpu_without_amx", lambda: not amx)
    taken = []
    monkeypatch.setattr(attention_ops, "chunked_attention", lambda *qkv: taken.append(True) or qkv[0])
    q, k, v = (t.to(dtype).requires_grad_(needs_grad) for t in token_major(1, 2, 8, 16, seed=4))
    attention_ops.attention(q, k, v)
    assert bool(taken) == chunks
