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
from mmgen.models.layers import (
    GroupNorm32,
    NormSiLU,
    add_residual,
    autocast_off,
    channel_axis,
    channels_back,
    channels_last,
    channels_to_end,
    group_norm,
    kernel_2d,
    mix_channels,
    per_channel,
)


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


class ModalNorm(nn.Module):
    """The official norm wrapper (keys `….GroupNorm.*`): GroupNorm32 whose statistics for a video
    (B, F, C, H, W) span all frames of a sample (groups of C/32 channels × F × H × W), computed in place of
    the official permute to (B, C, F, H, W) and back. 3-D inputs (B, C, T) are normalised as usual. Any
    layout: the output keeps the input's (channels-last frames, token-major attention inputs)."""

    def __init__(self, channels: int):
        super().__init__()
        self.GroupNorm = GroupNorm32(channels)

    def forward(self, x: torch.Tensor, modulation: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return group_norm(x, self.GroupNorm, channel_axis(x), modulation)


def cat_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[a | b] along channels, joined channels-last so the result stays channels-last (torch.cat only keeps
    the layouts it knows by name)."""
    return channels_back(torch.cat([channels_to_end(a), channels_to_end(b)], dim=-1), a)


class VideoConv2d1d(nn.Module):
    """The official "2d+1d" video conv: a k×k conv on every frame, then a k-tap conv along the frames of
    every pixel, both zero-padded to keep the size."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3):
        super().__init__()
        self.video_conv_spatial = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.video_conv_temporal = nn.Conv1d(out_channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.video_conv_spatial(x.flatten(0, 1))  # (B·F, C', H, W), channels-last in and out
        return self._temporal(y.unflatten(0, x.shape[:2]))

    def _temporal(self, y: torch.Tensor) -> torch.Tensor:
        """The frame conv on frames (B, F, C, H, W) → (B, F, C', H, W), as a (k, 1) Conv2d over (B, C, F, H·W):
        for channels-last frames that is a channels-last image of the same memory, so no permute to
        pixel-major sequences and back (the official Conv1d) and no copies (2-5× faster in bf16)."""
        conv = self.video_conv_temporal
        image = y.flatten(3).transpose(1, 2)  # (B, C, F, H·W)
        out = F.conv2d(image, kernel_2d(conv.weight, 3), conv.bias, padding=(conv.padding[0], 0))
        return out.transpose(1, 2).unflatten(3, y.shape[-2:])


class VideoConv3d(nn.Module):
    """The official "3d" video conv (key `video_conv`): Conv3d over (C, F, H, W). With kernel 1 it is a
    per-pixel channel mix, computed per frame without the permute."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1):
        super().__init__()
        self.video_conv = nn.Conv3d(in_channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.video_conv
        if conv.kernel_size == (1, 1, 1):
            return mix_channels(x, conv.weight, conv.bias)
        if _unwritten_bf16_weight_gradient(x, conv):
            with autocast_off("cpu"):
                return conv(x.float().transpose(1, 2)).transpose(1, 2)
        return conv(x.transpose(1, 2)).transpose(1, 2)  # channels-last frames are channels_last_3d here


def _unwritten_bf16_weight_gradient(x: torch.Tensor, conv: nn.Conv3d) -> bool:
    """Whether `conv` would take its weight's gradient in bf16 on the CPU (training under CPU bf16 autocast) over
    more than one frame but fewer than its kernel spans (2 frames: the tiny test models'). There oneDNN's bf16
    Conv3d backward-weights kernel (torch 2.13, AVX-512 CPUs) reads memory it never wrote: the gradient is wrong
    in a fresh process, and garbage where earlier tensors left theirs — a second bf16 finetune in one process
    "diverged" (inf). Its fp32 kernel, its bf16 forward and input gradient, and every
    other frame count are right (checked 1–8 frames, kernels 3 and 5): the conv then trains in fp32."""
    return (x.device.type == "cpu" and 1 < x.shape[1] < conv.kernel_size[0] and torch.is_grad_enabled()
            and conv.weight.requires_grad and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class AudioConv(nn.Module):
    """The official audio conv wrapper (key `audio_conv`): a "same"-padded, optionally dilated Conv1d."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.audio_conv = nn.Conv1d(in_channels, out_channels, kernel, padding=padding, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As a Conv2d over (B, C, 1, L): torch runs a Conv1d channels-first whatever its input's layout, and
        a channels-last sequence is a channels-last (B, C, 1, L) image, so this keeps it, without copies."""
        conv = self.audio_conv
        if conv.kernel_size == (1,):
            return mix_channels(x, conv.weight, conv.bias)
        y = F.conv2d(
            x.unsqueeze(2), kernel_2d(conv.weight, 2), conv.bias,
            padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]),
        )  # fmt: skip
        return y.squeeze(2)


def _frames(op):
    """Lift an image op on (N, C, H, W) to a video (B, F, C, H, W)."""
    return lambda x: op(x.flatten(0, 1)).unflatten(0, x.shape[:2])


# Resampling per modality: video pools/repeats H and W only (frames stay; per frame keeps channels-last),
# audio L by 4.
RESAMPLE = {
    "down": {"video": _frames(lambda x: F.avg_pool2d(x, 2)), "audio": lambda x: F.avg_pool1d(x, 4)},
    "up": {
        "video": _frames(lambda x: F.interpolate(x, scale_factor=2, mode="nearest")),
        # nearest ×4 as a repeat of every channels-last sample (interpolate would return channels-first)
        "audio": lambda x: channels_back(channels_to_end(x).repeat_interleave(4, dim=-2), x),
    },
}


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


class InitialBlock(nn.Module):
    """`input_blocks.0.0`: lifts pixels and samples to `channels` features, handed on channels-last like every
    layer's output (a single-channel input is both layouts at once, and torch's convolution then returns
    channels-first: the mono audio's)."""

    def __init__(self, video_channels: int, audio_channels: int, channels: int):
        super().__init__()
        self.video_conv = VideoConv2d1d(video_channels, channels, 3)
        self.audio_conv = AudioConv(audio_channels, channels, 3)

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        return {m: channels_last(branch(self, m, "conv")(t)) for m, t in x.items()}


class SelfAttention(nn.Module):
    """Single-modal attention over tokens (N, C, T): x + proj_out(attn(qkv(norm(x)))), heads split q|k|v
    first (official `SingleModalAtten`). `attention` is swappable (the tests' reference path). Token-major
    inputs (channels innermost) stay token-major throughout: the projections are matmuls over tokens."""

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
        qkv = mix_channels(self.norm(x), self.qkv.weight, self.qkv.bias)
        return add_residual(
            x, mix_channels(self.attention(qkv, self.num_heads), self.proj_out.weight, self.proj_out.bias)
        )


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
            ModalNorm(channels), NormSiLU(), VideoConv2d1d(channels, out_channels)
        )
        self.audio_in_layers = nn.Sequential(
            ModalNorm(channels), NormSiLU(), AudioConv(channels, out_channels, 3, dilation)
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
        return nn.Sequential(ModalNorm(channels), NormSiLU(), nn.Dropout(dropout), conv)

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        out = {m: self._residual(m, t, cond.emb[m]) for m, t in x.items()}
        if hasattr(self, "spatial_attention_block"):
            out["video"] = self._video_attention(out["video"])
        if hasattr(self, "audio_attention_block"):
            out["audio"] = self.audio_attention_block(out["audio"])
        return out

    def _residual(self, modality: str, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        resample = RESAMPLE[self.resample][modality] if self.resample else _unchanged
        h = resample(branch(self, modality, "in_layers")(x))
        e = self.emb_layers(emb)  # (B, 2C') or (B, C')
        out_norm, *out_rest = branch(self, modality, "out_layers")
        if self.use_scale_shift_norm:
            h = out_norm(h, e.chunk(2, dim=1))
        else:
            h = out_norm(h + per_channel(e.to(h.dtype), h))
        for layer in out_rest:
            h = layer(h)
        # x resampled only now: an upsampled copy held through the block would be its largest tensor
        return add_residual(branch(self, modality, "skip_connection")(resample(x)), h)

    def _video_attention(self, video: torch.Tensor) -> torch.Tensor:
        """Spatial attention per frame, then temporal attention per pixel, on token-major copies of
        channels-last frames; returns channels-last frames (B, F, C, H, W)."""
        b, f, c, h, w = video.shape
        tokens = channels_to_end(video).reshape(b * f, h * w, c)  # per frame (B·F, H·W, C): a view
        y = self.spatial_attention_block(tokens.transpose(1, 2)).transpose(1, 2)
        y = y.reshape(b, f, h * w, c).transpose(1, 2).reshape(b * h * w, f, c)  # per pixel (B·H·W, F, C)
        y = self.temporal_attention_block(y.transpose(1, 2)).transpose(1, 2)
        y = y.reshape(b, h * w, f, c).transpose(1, 2).contiguous().view(b, f, h, w, c)
        return y.movedim(-1, 2)  # (B, F, C, H, W), channels-last


class BlockSequence(nn.Sequential):
    """One official `input_blocks.i` / `output_blocks.i` entry: blocks applied in order to a Modal."""

    def forward(self, x: Modal, cond: Conditioning) -> Modal:
        for block in self:
            x = block(x, cond)
        return x
