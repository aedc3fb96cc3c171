"""The official MM-Diffusion computation, op for op: the baseline of benchmarks/forward.py and a second oracle.

mmgen's fast modules compute what the official `MultimodalUNet` computes, but not the way it computes it:
channels-last video and audio throughout, GroupNorm statistics of a frame-major video without the permute,
the frame conv as one matmul and shifted sums, 1×1 convs as matmuls over pixels/tokens, attention through
SDPA with every RS-MMA window batched, resampling per frame.
`official_computation(model)` runs a model with each of those written back straight from
official-checkpoints.md §3.1–3.4 — standard (channels-first) layout, permutes, plain torch calls,
tests/oracle_attention.py's loop-per-frame attention — so the benchmark's ratio measures everything mmgen changed, and the tests can prove the fast
path against the official way of computing, with the same weights, not only against stored outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import MethodType
from unittest import mock

import torch
import torch.nn.functional as F
from oracle_attention import reference_rs_mma, reference_self_attention
from torch import nn

from mmgen.modal import Modal
from mmgen.models import mm_layers, mmunet, srunet
from mmgen.models.cross_attention import CrossModalAttention
from mmgen.models.layers import GroupNorm32, per_channel
from mmgen.models.mm_layers import (
    AudioConv,
    Conditioning,
    ModalNorm,
    ResBlock,
    SelfAttention,
    VideoConv2d1d,
    VideoConv3d,
    channel_axis,
)
from mmgen.models.srunet import AttentionBlock


def scale_shift(y: torch.Tensor, modulation: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The ResBlocks' use_scale_shift_norm after the norm: out_norm(h) * (1 + scale) + shift, with the
    (B, C) emb_layers output cast to h's dtype and broadcast along the channel axis."""
    if modulation is None:
        return y
    scale, shift = (per_channel(t.to(y.dtype), y) for t in modulation)
    return y * (1 + scale) + shift


def official_norm(self: ModalNorm, x: torch.Tensor, modulation=None) -> torch.Tensor:
    """GroupNorm32: a video (B, F, C, H, W) is permuted to (B, C, F, H, W) (statistics over all frames),
    normalised in float32 and permuted back; then the scale-shift. Like the official check, a 5-D input whose
    dim 1 already has C entries (F == C) is not permuted."""
    norm = self.GroupNorm
    permute = x.dim() == 5 and x.shape[1] != norm.num_channels
    y = x.permute(0, 2, 1, 3, 4) if permute else x
    y = F.group_norm(y.float(), norm.num_groups, norm.weight, norm.bias, norm.eps).to(x.dtype)
    return scale_shift(y.permute(0, 2, 1, 3, 4) if permute else y, modulation)


def official_conv2d1d(self: VideoConv2d1d, x: torch.Tensor) -> torch.Tensor:
    """Video conv "2d+1d": a Conv2d on every frame, then a Conv1d along every pixel's frames."""
    b, f, c, h, w = x.shape
    y = self.video_conv_spatial(x.reshape(b * f, c, h, w))  # (B·F, C', H, W)
    c = y.shape[1]
    y = y.reshape(b, f, c, h, w).permute(0, 3, 4, 2, 1).reshape(b * h * w, c, f)  # (b f) c h w -> (b h w) c f
    y = self.video_conv_temporal(y)
    return y.reshape(b, h, w, c, f).permute(0, 4, 3, 1, 2)  # (b h w) c f -> b f c h w


def official_conv3d(self: VideoConv3d, x: torch.Tensor) -> torch.Tensor:
    """Video conv "3d": a Conv3d over (B, C, F, H, W), whatever the kernel size (1 included)."""
    return self.video_conv(x.permute(0, 2, 1, 3, 4)).permute(0, 2, 1, 3, 4)


def official_audio_conv(self: AudioConv, x: torch.Tensor) -> torch.Tensor:
    """The audio conv: a plain Conv1d."""
    return self.audio_conv(x)


def official_self_attention(self: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Single-modal attention: 1×1 Conv1d projections around the loop-per-frame reference attention."""
    return x + self.proj_out(reference_self_attention(self.qkv(self.norm(x)), self.num_heads))


def official_video_attention(self: ResBlock, video: torch.Tensor) -> torch.Tensor:
    """Spatial attention on (B·F, C, H·W), then temporal on (B·H·W, C, F), permuting between them."""
    b, f, c, h, w = video.shape
    y = self.spatial_attention_block(video.reshape(b * f, c, h * w))
    y = y.view(b, f, c, h * w).permute(0, 3, 2, 1).reshape(b * h * w, c, f)
    y = self.temporal_attention_block(y)
    return y.view(b, h, w, c, f).permute(0, 4, 3, 1, 2)


def official_cross_attention(self: CrossModalAttention, x: Modal, cond: Conditioning) -> Modal:
    """RS-MMA block: the video as frame-major tokens (B, C, F·H·W), normed and projected to q|k|v as one
    sequence, the loop-per-frame attention, each result projected and added to its un-normalised input."""
    video, audio = x["video"], x["audio"]
    b, f, c, h, w = video.shape
    tokens = video.permute(0, 2, 1, 3, 4).reshape(b, c, f * h * w)  # b f c h w -> b c (f h w)
    qkv_video = self.v_qkv(self.v_norm(tokens)).reshape(b, 3 * c, f, h * w)
    qkv_audio = self.a_qkv(self.a_norm(audio))
    shift = cond.shifts.get(self, 0)
    out_video, out_audio = reference_rs_mma(qkv_video, qkv_audio, self.num_heads, self.window, shift)
    out_video = out_video.reshape(b, c, f, h, w).permute(0, 2, 1, 3, 4)  # b c (f h w) -> b f c h w
    return {"video": video + self.video_proj_out(out_video), "audio": audio + self.audio_proj_out(out_audio)}


OFFICIAL_FORWARD = {
    ModalNorm: official_norm,
    AudioConv: official_audio_conv,
    SelfAttention: official_self_attention,
    VideoConv2d1d: official_conv2d1d,
    VideoConv3d: official_conv3d,
    CrossModalAttention: official_cross_attention,
}

# Video resampling on the (B, F, C, H, W) tensor itself: AvgPool3d (1, 2, 2), nearest ×2 on H and W;
# audio AvgPool1d(4) (already the official op) / nearest ×4.
OFFICIAL_RESAMPLE = {
    "down": {"video": lambda x: F.avg_pool3d(x, (1, 2, 2))},
    "up": {
        "video": lambda x: F.interpolate(x, (x.shape[2], 2 * x.shape[3], 2 * x.shape[4]), mode="nearest"),
        "audio": lambda x: F.interpolate(x, scale_factor=4, mode="nearest"),
    },
}


@contextmanager
def official_computation(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` computing the official way: every ModalNorm, conv, self- and cross-attention block gets its
    official forward, the video attention of every ResBlock its permutes, and (process-wide, while inside)
    the resampling its official ops, the U-Net's inputs and skip joins the standard layout. Everything is
    restored on exit."""
    with ExitStack() as restore:
        for direction, ops in OFFICIAL_RESAMPLE.items():
            restore.enter_context(mock.patch.dict(mm_layers.RESAMPLE[direction], ops))
        restore.enter_context(mock.patch.object(mmunet, "channels_last", lambda x: x))
        join = lambda h, s: torch.cat([h, s], dim=channel_axis(h))  # noqa: E731
        restore.enter_context(mock.patch.object(mmunet, "cat_channels", join))
        for module in model.modules():
            if isinstance(module, ResBlock) and hasattr(module, "spatial_attention_block"):
                name, official = "_video_attention", MethodType(official_video_attention, module)
            elif type(module) in OFFICIAL_FORWARD:
                name, official = "forward", MethodType(OFFICIAL_FORWARD[type(module)], module)
            else:
                continue
            setattr(module, name, official)  # an instance attribute shadows the class's
            restore.callback(delattr, module, name)
        yield model


def official_group_norm(self: GroupNorm32, x: torch.Tensor, modulation=None) -> torch.Tensor:
    """guided-diffusion's GroupNorm32: torch's GroupNorm on the input cast to float32, cast back; then the
    scale-shift."""
    y = F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)
    return scale_shift(y, modulation)


def official_legacy_attention(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """QKVAttentionLegacy: per head [q | k | v] channels, both scaled by ch^(-1/4), einsum, fp32 softmax."""
    batch, width, length = qkv.shape
    ch = width // (3 * num_heads)
    q, k, v = qkv.reshape(batch * num_heads, 3 * ch, length).split(ch, dim=1)
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(batch, -1, length)


def official_sr_attention(self: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """guided-diffusion's AttentionBlock: 1×1 Conv1d projections on (N, C, H·W), the legacy attention."""
    n, c, height, width = x.shape
    tokens = x.reshape(n, c, height * width)
    h = self.proj_out(official_legacy_attention(self.qkv(self.norm(tokens)), self.num_heads))
    return (tokens + h).reshape(n, c, height, width)


OFFICIAL_SR_FORWARD = {GroupNorm32: official_group_norm, AttentionBlock: official_sr_attention}


@contextmanager
def official_sr_computation(model: nn.Module) -> Iterator[nn.Module]:
    """Run an SR U-Net the way the official ImageSuperResModel computes: standard layout (no channels-last),
    torch's GroupNorm on float32 copies, Conv1d projections and the einsum attention, all frames in one
    batch (no chunking). Everything is restored on exit."""
    with ExitStack() as restore:
        restore.enter_context(mock.patch.object(srunet, "channels_last", lambda x: x))
        restore.enter_context(mock.patch.object(model, "frames_per_call", 1 << 30))
        for module in model.modules():
            if type(module) in OFFICIAL_SR_FORWARD:
                module.forward = MethodType(OFFICIAL_SR_FORWARD[type(module)], module)
                restore.callback(delattr, module, "forward")
        yield model
