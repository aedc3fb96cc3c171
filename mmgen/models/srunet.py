"""The SR U-Net (`sr-unet`): per-frame 64→256 super-resolution, state-dict compatible with the official
`ImageSuperResModel` (a guided-diffusion U-Net; Dhariwal & Nichol, 2021), so the released
`Landscape_SR.pt` / `AIST++_SR.pt` load with strict=True. Layout and key names: official-checkpoints.md
§1.2, §4.

The network denoises one 256×256 frame x_t conditioned on its 64×64 low-resolution frame, which is
bilinearly upsampled and concatenated after x_t. It predicts ε (3 channels) ⊕ the learned-range variance
value (3 channels).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmgen.models.attention_ops import qkv_attention
from mmgen.models.config import SRUNetConfig
from mmgen.models.layers import (
    GroupNorm32,
    NormSiLU,
    add_residual,
    channels_last,
    mix_channels,
    timestep_embedding,
)
from mmgen.runtime.device import memory_budget

Resample = Literal["up", "down"] | None


def _zeroed(module: nn.Module) -> nn.Module:
    """Zero-initialise a residual branch's last layer so every block starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _resample(x: torch.Tensor, how: Resample) -> torch.Tensor:
    """Nearest ×2 up or 2×2 average-pool down over H, W (the resblock_updown variant: no conv)."""
    if how == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if how == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class ResBlock(nn.Module):
    """Residual block with timestep conditioning (FiLM scale/shift on the second norm when `scale_shift`).
    Up/down blocks resample between the first SiLU and the first conv, and resample the skip path too."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        dropout: float,
        scale_shift: bool,
        resample: Resample = None,
    ):
        super().__init__()
        self.resample = resample
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), NormSiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            NormSiLU(),
            nn.Dropout(dropout),
            _zeroed(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        norm_act, conv = self.in_layers[:-1], self.in_layers[-1]
        h = conv(_resample(norm_act(x), self.resample))  # (N, C', H', W')
        e = self.emb_layers(emb)  # (N, 2C' or C')
        out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
        if self.scale_shift:
            h = out_rest(out_norm(h, e.chunk(2, dim=1)))
        else:
            h = self.out_layers(h + e.to(h.dtype)[..., None, None])
        return add_residual(self.skip_connection(_resample(x, self.resample)), h)  # resampled late: less held


class AttentionBlock(nn.Module):
    """Spatial self-attention over all H·W positions, with guided-diffusion's legacy head split of qkv."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zeroed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        tokens = x.reshape(n, c, height * width)  # (N, C, T): token-major (a view) for channels-last x
        qkv = mix_channels(self.norm(tokens), self.qkv.weight, self.qkv.bias)  # (N, 3C, T)
        h = qkv_attention(qkv, self.num_heads, legacy_order=True)
        return add_residual(tokens, mix_channels(h, self.proj_out.weight, self.proj_out.bias)).reshape(
            n, c, height, width
        )


class EmbedSequential(nn.Sequential):
    """A U-Net block: layers applied in turn, the timestep embedding handed to those that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class SRUNet(nn.Module):
    """forward(x (N,3,H,W), timesteps (N,), low_res (N,3,h,w)) → (N, 6, H, W) = ε ⊕ variance value.

    Set `gradient_checkpointing = True` to recompute each block's activations in the backward pass while
    training (saves memory in finetune; no effect in eval mode). Without gradients, N frames run in chunks of
    `frames_per_call` (None: as many as fit the device's memory budget, runtime.memory_budget)."""

    # Activation elements per frame at inference, in units of model_channels × image pixels: the encoder's
    # skips (≈4.5) plus the decoder's widest working set (≈7), measured at the released config.
    ACTIVATIONS_PER_PIXEL_CHANNEL = 12

    def __init__(self, config: SRUNetConfig):
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False
        self.frames_per_call: int | None = None
        mc = config.model_channels
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(cin: int, cout: int, resample: Resample = None) -> ResBlock:
            return ResBlock(cin, emb_dim, cout, config.dropout, config.use_scale_shift_norm, resample)

        def attn(channels: int, heads: int) -> AttentionBlock:
            if config.num_head_channels != -1:
                heads = channels // config.num_head_channels
            return AttentionBlock(channels, heads)

        heads_up = config.num_heads if config.num_heads_upsample == -1 else config.num_heads_upsample
        last_level = len(config.channel_mult) - 1

        # Encoder: every block's output is kept as a skip for the decoder.
        ch, ds = mc, 1
        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(2 * config.in_channels, mc, 3, padding=1))]
        )
        skip_channels = [ch]
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers.append(attn(ch, config.num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != last_level:
                self.input_blocks.append(EmbedSequential(res(ch, ch, "down")))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(res(ch, ch), attn(ch, config.num_heads), res(ch, ch))

        # Decoder: each block takes [features | popped skip] along channels.
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers.append(attn(ch, heads_up))
                if level and i == config.num_res_blocks:
                    layers.append(res(ch, ch, "up"))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch), NormSiLU(), _zeroed(nn.Conv2d(ch, config.out_channels, 3, padding=1))
        )

    def _run(self, block: EmbedSequential, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def frame_bytes(self, height: int, width: int) -> int:
        """Activation memory one frame of height × width needs in an inference forward (float32, the worst
        case: under autocast most activations are bf16)."""
        return 4 * self.ACTIVATIONS_PER_PIXEL_CHANNEL * self.config.model_channels * height * width

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        chunk = self.frames_per_call
        if chunk is None:
            chunk = max(1, memory_budget(x.device) // self.frame_bytes(*x.shape[-2:]))
        if torch.is_grad_enabled() or x.shape[0] <= chunk:
            return self._forward(x, timesteps, low_res)
        timesteps = timesteps.expand(x.shape[0])
        pieces = zip(x.split(chunk), timesteps.split(chunk), low_res.split(chunk), strict=True)
        return torch.cat([self._forward(*piece) for piece in pieces])

    def _forward(self, x: torch.Tensor, timesteps: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels))  # (N, 4·mc)
        upsampled = F.interpolate(low_res, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h = channels_last(torch.cat([x, upsampled], dim=1))  # (N, 6, H, W); every layer keeps channels-last
        skips = []
        for block in self.input_blocks:
            h = self._run(block, h, emb)
            skips.append(h)
        h = self._run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(x.dtype)).contiguous()  # (N, out_channels, H, W)
