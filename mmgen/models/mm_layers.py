"""Layers of the coupled video/audio U-Net, named as the official MM-Diffusion checkpoint names them.

Tensors: video (B, F, C, H, W), audio (B, C, L); a block's input and output is a `Modal` dict of both.
Where video and audio are treated alike, the code runs once over both: per-modality submodules keep the
official names (`video_in_layers`, `audio_in_layers`, ...) and are looked up by modality with `branch`.
Spec: official-checkpoints.md §3.1–3.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.modal import Modal
from mmgen.models.attention_ops import qkv_attention
from mmgen.models.layers import GroupNorm32


@dataclass(frozen=True)
class Conditioning:
    """What every block may need besides the features: the time embedding of each modality (B, E) and the
    window shift of each shifting cross-attention block (drawn before the blocks run, so a checkpointed
    block recomputes with the same shift)."""

    emb: Modal
    shifts: dict[nn.Module, int] = field(default_factory=dict)


def branch(owner: nn.Module, modality: str, part: str) -> nn.Module:
    """The official per-modality submodule `{modality}_{part}` of `owner` (e.g. `video_in_layers`)."""
    return getattr(owner, f"{modality}_{part}")


def channel_axis(x: torch.Tensor) -> int:
    """Channels sit at dim 2 of a video (B, F, C, H, W) and at dim 1 of audio (B, C, L)."""
    return 2 if x.dim() == 5 else 1


def per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, C) values shaped to broadcast along the channel axis of `like`."""
    shape = [values.shape[0]] + [1] * (like.dim() - 1)
    shape[channel_axis(like)] = values.shape[1]
    return values.view(shape)


class ModalNorm(nn.Module):
    """The official norm wrapper (keys `….GroupNorm.*`): GroupNorm32 whose statistics for a video
    (B, F, C, H, W) span all frames of a sample (groups of C/32 channels × F × H × W), computed in place of
    the official permute to (B, C, F, H, W) and back. 3-D inputs (B, C, T) are normalised as usual."""

    def __init__(self, channels: int):
        super().__init__()
        self.GroupNorm = GroupNorm32(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return self.GroupNorm(x)
        norm = self.GroupNorm
        b, f, c, h, w = x.shape
        groups = norm.num_groups
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float().reshape(b, f, groups, c // groups, h * w)
            # Statistics from the sums of x and x², 2-3× faster on CPU than var_mean over these strided dims;
            # E[x²] − E[x]² loses ~1e-7·mean²/var of the variance in float32, far below the 1e-4 tolerance.
            count = f * (c // groups) * h * w
            mean = xf.sum(dim=(1, 3, 4), keepdim=True) / count  # (B, 1, G, 1, 1)
            var = (torch.square(xf).sum(dim=(1, 3, 4), keepdim=True) / count - mean.square()).clamp_(min=0)
            scale = norm.weight.float().view(1, 1, groups, c // groups, 1) * torch.rsqrt(var + norm.eps)
            shift = norm.bias.float().view(1, 1, groups, c // groups, 1) - mean * scale
            return torch.addcmul(shift, xf, scale).view(b, f, c, h, w).to(x.dtype)


class VideoConv2d1d(nn.Module):
    """The official "2d+1d" video conv: a k×k conv on every frame, then a k-tap conv along the frames of
    every pixel, both zero-padded to keep the size."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3):
        super().__init__()
        self.video_conv_spatial = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.video_conv_temporal = nn.Conv1d(out_channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f = x.shape[:2]
        y = self.video_conv_spatial(x.flatten(0, 1))  # (B·F, C', H, W)
        c, h, w = y.shape[1:]
        return self._temporal(y.view(b, f, c, h * w)).view(b, f, c, h, w)

    def _temporal(self, y: torch.Tensor) -> torch.Tensor:
        """The frame conv on frame-major features (B, F, C, N) → (B, F, C', N), as one matmul of all k taps
        over every frame and shifted sums: twice as fast on CPU as a Conv1d over B·N sequences of F frames,
        and no permute to pixel-major and back (the official computation)."""
        conv = self.video_conv_temporal
        k, frames = conv.kernel_size[0], y.shape[1]
        weight = conv.weight.permute(2, 0, 1).reshape(k * conv.out_channels, conv.in_channels)  # (k·C', C)
        taps = torch.matmul(weight.to(y.dtype), y).unflatten(2, (k, conv.out_channels))  # (B, F, k, C', N)
        out = taps[:, :, k // 2] + conv.bias.to(taps.dtype).view(1, 1, -1, 1)
        for j in range(k):
            offset = j - k // 2  # out[f] += W_j · y[f + offset], zero beyond the clip's ends
            if 0 < offset < frames:
                out[:, : frames - offset] += taps[:, offset:, j]
            elif 0 < -offset < frames:
                out[:, -offset:] += taps[:, : frames + offset, j]
        return out


class VideoConv3d(nn.Module):
    """The official "3d" video conv (key `video_conv`): Conv3d over (C, F, H, W). With kernel 1 it is a
    per-pixel channel mix, computed per frame without the permute."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1):
        super().__init__()
        self.video_conv = nn.Conv3d(in_channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.video_conv
        if conv.kernel_size == (1, 1, 1):
            y = F.conv2d(x.flatten(0, 1), conv.weight.flatten(2).unsqueeze(-1), conv.bias)  # (B·F, C', H, W)
            return y.unflatten(0, x.shape[:2])
        return conv(x.transpose(1, 2)).transpose(1, 2)


class AudioConv(nn.Module):
    """The official audio conv wrapper (key `audio_conv`): a "same"-padded, optionally dilated Conv1d."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.audio_conv = nn.Conv1d(in_channels, out_channels, kernel, padding=padding, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_conv(x)


def _frames(op):
    """Lift an image op on (N, C, H, W) to a video (B, F, C, H, W)."""
    return lambda x: op(x.flatten(0, 1)).unflatten(0, x.shape[:2])


# Resampling per modality: video pools/repeats H and W only (frames stay), audio L by 4.
RESAMPLE = {
    "down": {"video": _frames(lambda x: F.avg_pool2d(x, 2)), "audio": lambda x: F.avg_pool1d(x, 4)},
    "up": {
        # nearest ×2 on the 5-D tensor itself, sizing (C, H, W) as (C, 2H, 2W): 6× faster than per frame
        "video": lambda x: F.interpolate(x, (x.shape[2], 2 * x.shape[3], 2 * x.shape[4]), mode="nearest"),
        "audio": lambda x: F.interpolate(x, scale_factor=4, mode="nearest"),
    },
}


class InitialBlock(nn.Module):
    """`input_blocks.0.0`: lifts pixels and samples to `channels` features."""

    def __init__(self, video_channels: int, audio_channels: int, channels: int):
        super().__init__()
        self.video_conv = VideoConv2d1d(video_channels, channels, 3)
        self.audio_conv = AudioConv(audio_channels, channels, 3)

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        return {m: branch(self, m, "conv")(t) for m, t in x.items()}


class SelfAttention(nn.Module):
    """Single-modal attention over tokens (N, C, T): x + proj_out(attn(qkv(norm(x)))), heads split q|k|v
    first (official `SingleModalAtten`). `attention` is swappable (the tests' reference path)."""

    attention = staticmethod(qkv_attention)

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = ModalNorm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.attention(self.qkv(self.norm(x)), self.num_heads))


class ResBlock(nn.Module):
    """The multimodal residual block (§3.2): per modality norm → SiLU → conv (2d+1d for video, dilated k3
    for audio), optional resampling after that conv, scale-shift by the time embedding, norm → SiLU →
    dropout → 1×1 conv, skip; then optional video spatial+temporal and audio self-attention."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        dilation: int,
        dropout: float,
        use_scale_shift_norm: bool,
        resample: str | None = None,
        video_attention: bool = False,
        audio_attention: bool = False,
        num_heads: int = 4,
    ):
        super().__init__()
        self.resample = resample
        self.use_scale_shift_norm = use_scale_shift_norm
        self.video_in_layers = nn.Sequential(
            ModalNorm(channels), nn.SiLU(), VideoConv2d1d(channels, out_channels)
        )
        self.audio_in_layers = nn.Sequential(
            ModalNorm(channels), nn.SiLU(), AudioConv(channels, out_channels, 3, dilation)
        )
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.video_out_layers = self._out_layers(
            out_channels, dropout, VideoConv3d(out_channels, out_channels)
        )
        self.audio_out_layers = self._out_layers(out_channels, dropout, AudioConv(out_channels, out_channels))
        if out_channels != channels:
            self.video_skip_connection = VideoConv3d(channels, out_channels)
            self.audio_skip_connection = AudioConv(channels, out_channels)
        else:
            self.video_skip_connection = self.audio_skip_connection = nn.Identity()
        if video_attention:
            self.spatial_attention_block = SelfAttention(out_channels, num_heads)
            self.temporal_attention_block = SelfAttention(out_channels, num_heads)
        if audio_attention:
            self.audio_attention_block = SelfAttention(out_channels, num_heads)

    @staticmethod
    def _out_layers(channels: int, dropout: float, conv: nn.Module) -> nn.Sequential:
        for p in conv.parameters():
            nn.init.zeros_(p)
        return nn.Sequential(ModalNorm(channels), nn.SiLU(), nn.Dropout(dropout), conv)

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        out = {m: self._residual(m, t, cond.emb[m]) for m, t in x.items()}
        if hasattr(self, "spatial_attention_block"):
            out["video"] = self._video_attention(out["video"])
        if hasattr(self, "audio_attention_block"):
            out["audio"] = self.audio_attention_block(out["audio"])
        return out

    def _residual(self, modality: str, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = branch(self, modality, "in_layers")(x)
        if self.resample:
            h, x = RESAMPLE[self.resample][modality](h), RESAMPLE[self.resample][modality](x)
        e = per_channel(self.emb_layers(emb).to(h.dtype), h)
        out_norm, *out_rest = branch(self, modality, "out_layers")
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=channel_axis(h))
            h = out_norm(h) * (1 + scale) + shift
        else:
            h = out_norm(h + e)
        for layer in out_rest:
            h = layer(h)
        return branch(self, modality, "skip_connection")(x) + h

    def _video_attention(self, video: torch.Tensor) -> torch.Tensor:
        b, f, c, h, w = video.shape
        y = self.spatial_attention_block(video.reshape(b * f, c, h * w))  # per frame: (B·F, C, H·W)
        y = y.view(b, f, c, h * w).permute(0, 3, 2, 1).reshape(b * h * w, c, f)  # per pixel: (B·H·W, C, F)
        y = self.temporal_attention_block(y)
        return y.view(b, h, w, c, f).permute(0, 4, 3, 1, 2)  # (B, F, C, H, W)


class BlockSequence(nn.Sequential):
    """One official `input_blocks.i` / `output_blocks.i` entry: blocks applied in order to a Modal."""

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        for block in self:
            x = block(x, cond)
        return x
