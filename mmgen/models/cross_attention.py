"""Random-shift multimodal attention (RS-MMA), the bridge between the video and audio branches.

Frame i's video tokens attend to the audio of `window` frames starting at frame i + shift; audio chunk i
(⌊L/F⌋ tokens, the last chunk taking the remainder) attends to the video of frames i + shift … i + shift +
window − 1; windows wrap around circularly. Spec: official-checkpoints.md §3.4.

The fast path computes all frames' windows in one SDPA call per direction, the keys/values of every window
being views into one copy of the tokens in window order (circular_windows). tests/oracle_attention.py holds a
loop-per-frame reference written straight from the spec's formulas.
"""

from __future__ import annotations

import torch
from torch import nn

from mmgen.modal import Modal
from mmgen.models.attention_ops import attention
from mmgen.models.layers import add_residual
from mmgen.models.mm_layers import AudioConv, Conditioning, ModalNorm, VideoConv3d, mix_channels


def circular_windows(tokens: torch.Tensor, start: int, count: int, size: int, step: int) -> torch.Tensor:
    """Windows over axis 1 of `tokens` (B, N, …) that wrap around: (B, count, size, …), window i holding tokens
    (start + i·step + k) mod N for k < size. One copy of the (count − 1)·step + size tokens the windows span, in
    order from `start`, of which the windows are overlapping views: the gathered keys of all windows would be
    `size/step` times bigger (the window: up to 16× in the released model)."""
    span = (count - 1) * step + size
    order = (start + torch.arange(span, device=tokens.device)) % tokens.shape[1]
    return tokens.index_select(1, order).unfold(1, size, step).movedim(-1, 2)


def rs_mma(
    qkv_video: torch.Tensor, qkv_audio: torch.Tensor, num_heads: int, window: int, shift: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed cross-modal attention. qkv_video (B, 3C, F, HW), qkv_audio (B, 3C, L), channels laid out
    q|k|v then heads (any layout; token-major needs no copy) → video (B, C, F, HW), audio (B, C, L), both
    token-major in memory. Scale 1/sqrt(C/heads) (the official ch^-1/4 on
    q and on k); the softmax runs in the activations' dtype, as in the official code."""
    b, width, frames, hw = qkv_video.shape
    length = qkv_audio.shape[-1]
    ch = width // (3 * num_heads)
    per_frame = length // frames
    if per_frame == 0:
        raise ValueError(f"RS-MMA needs at least one audio token per frame (L={length}, F={frames})")
    # Token-major, with unit stride on ch as SDPA's fused kernels need (copied unless already so):
    # (B, F, HW, heads, ch) and (B, L, heads, ch)
    qv, kv, vv = _unit_stride(qkv_video.reshape(b, 3, num_heads, ch, frames, hw).permute(1, 0, 4, 5, 2, 3))
    qa, ka, va = _unit_stride(qkv_audio.reshape(b, 3, num_heads, ch, length).permute(1, 0, 4, 2, 3))

    def heads_first(t: torch.Tensor) -> torch.Tensor:
        """(B, F, T, heads, ch) → (B·F, heads, T, ch)"""
        return t.flatten(0, 1).transpose(1, 2)

    # Video queries of frame i against the audio of its window: keys (B, F, window·apf, heads, ch).
    def audio_window(t: torch.Tensor) -> torch.Tensor:
        return heads_first(circular_windows(t, shift * per_frame, frames, window * per_frame, per_frame))

    video_out = attention(heads_first(qv), audio_window(ka), audio_window(va))
    # (B·F, heads, HW, ch)

    # Audio chunk i against the video of its window: keys (B, F, window·HW, heads, ch).
    def video_window(t: torch.Tensor) -> torch.Tensor:
        return heads_first(circular_windows(t, shift, frames, window, 1).flatten(2, 3))

    kw, vw = video_window(kv), video_window(vv)
    main = frames * per_frame
    audio_out = attention(
        heads_first(qa[:, :main].unflatten(1, (frames, per_frame))), kw, vw
    )  # (B·F, heads, apf, ch)
    audio_out = audio_out.unflatten(0, (b, frames)).transpose(2, 3).reshape(b, main, num_heads * ch)
    if main < length:  # the tail tokens belong to the last chunk and share its window
        last = frames - 1
        tail = attention(
            qa[:, main:].transpose(1, 2), kw[last::frames], vw[last::frames]
        )  # (B, heads, L - F·apf, ch)
        audio_out = torch.cat([audio_out, tail.transpose(1, 2).reshape(b, length - main, -1)], dim=1)
    audio_out = audio_out.transpose(1, 2)  # (B, C, L), token-major in memory

    video_out = video_out.transpose(1, 2).reshape(b, frames, hw, num_heads * ch).permute(0, 3, 1, 2)
    return video_out, audio_out


def _unit_stride(qkv: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v of a stacked (3, …, ch) tensor, each copied only if ch is not its innermost axis."""
    return tuple(t if t.stride(-1) == 1 else t.contiguous() for t in qkv.unbind(0))


class CrossModalAttention(nn.Module):
    """RS-MMA block (official `CrossAttentionBlock`): both modalities are normed, projected to q|k|v,
    attend across modalities within their window, and add a projected result to their input.
    `attention` is swappable (the tests' reference path)."""

    attention = staticmethod(rs_mma)

    def __init__(self, channels: int, num_head_channels: int, window: int, window_shift: bool):
        super().__init__()
        if num_head_channels <= 0 or channels % num_head_channels:
            raise ValueError(f"num_head_channels={num_head_channels} must divide the {channels} channels")
        self.num_heads = channels // num_head_channels
        self.window = window
        self.window_shift = window_shift
        self.v_norm = ModalNorm(channels)
        self.a_norm = ModalNorm(channels)
        self.v_qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.a_qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.video_proj_out = VideoConv3d(channels, channels)
        self.audio_proj_out = AudioConv(channels, channels)
        for p in (*self.video_proj_out.parameters(), *self.audio_proj_out.parameters()):
            nn.init.zeros_(p)

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        video, audio = x["video"], x["audio"]
        b, f, c, h, w = video.shape
        # the video qkv conv is a per-pixel channel mix: (B, F, 3C, H, W) → (B, 3C, F, HW), token-major
        qkv_video = mix_channels(self.v_norm(video), self.v_qkv.weight, self.v_qkv.bias)
        qkv_video = qkv_video.flatten(3).transpose(1, 2)
        qkv_audio = mix_channels(self.a_norm(audio), self.a_qkv.weight, self.a_qkv.bias)
        out_video, out_audio = self.attention(
            qkv_video, qkv_audio, self.num_heads, self.window, cond.shifts.get(self, 0)
        )
        out_video = out_video.transpose(1, 2).unflatten(3, (h, w))  # (B, F, C, H, W)
        return {
            "video": add_residual(video, self.video_proj_out(out_video)),
            "audio": add_residual(audio, self.audio_proj_out(out_audio)),
        }
