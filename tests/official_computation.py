"""The official MM-Diffusion computation, op for op: the baseline of benchmarks/forward.py and a second oracle.

mmgen's fast modules compute what the official `MultimodalUNet` computes, but not the way it computes it:
GroupNorm statistics of a frame-major video without the permute, the frame conv as one matmul and shifted
sums, 1×1×1 convs per frame, attention through SDPA with every RS-MMA window batched, resampling per frame.
`official_computation(model)` runs a model with each of those written back straight from
official-checkpoints.md §3.1–3.4 — permutes, plain torch calls, tests/oracle_attention.py's loop-per-frame
attention — so the benchmark's ratio measures everything mmgen changed, and the tests can prove the fast
path against the official way of computing, with the same weights, not only against stored outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import MethodType
from unittest import mock

import torch
import torch.nn.functional as F
from oracle_attention import reference_rs_mma, reference_self_attention
from torch import nn

from mmgen.modal import Modal
from mmgen.models import mm_layers
from mmgen.models.cross_attention import CrossModalAttention
from mmgen.models.mm_layers import Conditioning, ModalNorm, SelfAttention, VideoConv2d1d, VideoConv3d


def official_norm(self: ModalNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm32: a video (B, F, C, H, W) is permuted to (B, C, F, H, W) (statistics over all frames),
    normalised in float32 and permuted back. Like the official check, a 5-D input whose dim 1 already has
    C entries (F == C) is not permuted."""
    norm = self.GroupNorm
    permute = x.dim() == 5 and x.shape[1] != norm.num_channels
    y = x.permute(0, 2, 1, 3, 4) if permute else x
    y = F.group_norm(y.float(), norm.num_groups, norm.weight, norm.bias, norm.eps).to(x.dtype)
    return y.permute(0, 2, 1, 3, 4) if permute else y


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
    VideoConv2d1d: official_conv2d1d,
    VideoConv3d: official_conv3d,
    CrossModalAttention: official_cross_attention,
}

# Video resampling on the (B, F, C, H, W) tensor itself: AvgPool3d (1, 2, 2), nearest ×2 on H and W.
# (Audio resampling is already the official AvgPool1d(4) / nearest ×4.)
OFFICIAL_VIDEO_RESAMPLE = {
    "down": lambda x: F.avg_pool3d(x, (1, 2, 2)),
    "up": lambda x: F.interpolate(x, (x.shape[2], 2 * x.shape[3], 2 * x.shape[4]), mode="nearest"),
}


@contextmanager
def official_computation(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` computing the official way: every ModalNorm, video conv and cross-attention block gets
    its official forward, every self-attention the reference attention, and (process-wide, while inside)
    the video resampling its official op. Everything is restored on exit."""
    with ExitStack() as restore:
        for direction, op in OFFICIAL_VIDEO_RESAMPLE.items():
            restore.enter_context(mock.patch.dict(mm_layers.RESAMPLE[direction], video=op))
        for module in model.modules():
            if isinstance(module, SelfAttention):
                name, official = "attention", reference_self_attention
            elif type(module) in OFFICIAL_FORWARD:
                name, official = "forward", MethodType(OFFICIAL_FORWARD[type(module)], module)
            else:
                continue
            setattr(module, name, official)  # an instance attribute shadows the class's
            restore.callback(delattr, module, name)
        yield model
