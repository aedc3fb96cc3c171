"""The coupled video/audio U-Net of MM-Diffusion (Ruan et al., CVPR 2023), weight-compatible with the
official `MultimodalUNet`: same state_dict keys, shapes and order, same outputs (official-checkpoints.md §3).

Input video (B, F, C, H, W) and audio (B, 1, L) are denoised together: both branches share the U-Net's
layout and time embedding, and meet in random-shift cross-modal attention blocks (cross_attention.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmgen.modal import each
from mmgen.models.config import MMUNetConfig
from mmgen.models.cross_attention import CrossModalAttention
from mmgen.models.layers import NormSiLU, channels_last, timestep_embedding
from mmgen.models.mm_layers import (
    AudioConv,
    BlockSequence,
    Conditioning,
    InitialBlock,
    ModalNorm,
    ResBlock,
    VideoConv3d,
    cat_channels,
)

# The official code enables the middle block's full-window cross attention only for exactly these windows.
_MIDDLE_CROSS_WINDOWS = (1, 4, 8)


class _AudioDilation:
    """The official audio dilation counter (§3.5): each ResBlock's k3 audio conv uses 2^(counter mod 10)."""

    def __init__(self):
        self.counter = 1

    def __call__(self, step: int = 0) -> int:
        """The current dilation; then move the counter by `step`."""
        dilation = 2 ** (self.counter % 10)
        self.counter += step
        return dilation


class MMUNet(nn.Module):
    """Predicts the noise (ε) of a video/audio pair at diffusion timestep t."""

    def __init__(self, config: MMUNetConfig):
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False
        mc = config.model_channels
        frames, video_channels = config.video_size[:2]
        audio_channels = config.audio_size[0]
        self.time_embed = nn.Sequential(nn.Linear(mc, mc), nn.SiLU(), nn.Linear(mc, mc))
        dilation = _AudioDilation()

        def res_block(
            cin: int, cout: int, step: int, resample: str | None = None, **attention: bool
        ) -> ResBlock:
            return ResBlock(
                cin, cout, mc, dilation=dilation(step), dropout=config.dropout,
                use_scale_shift_norm=config.use_scale_shift_norm, resample=resample,
                num_heads=config.num_heads, **attention,
            )  # fmt: skip

        def attention_at(ds: int) -> dict[str, bool]:
            return {
                "video_attention": ds in config.video_attention_resolutions,
                "audio_attention": ds in config.audio_attention_resolutions,
            }

        def cross_block(channels: int, ds: int) -> list[nn.Module]:
            if ds not in config.cross_attention_resolutions:
                return []
            window = config.cross_attention_windows[config.cross_attention_resolutions.index(ds)]
            return [
                CrossModalAttention(channels, config.num_head_channels, window, config.cross_attention_shift)
            ]

        self.input_blocks = nn.ModuleList([BlockSequence(InitialBlock(video_channels, audio_channels, mc))])
        skip_channels, ch, ds = [mc], mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                self.input_blocks.append(
                    BlockSequence(
                        res_block(ch, mult * mc, +1, **attention_at(ds)), *cross_block(mult * mc, ds)
                    )
                )
                ch = mult * mc
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(BlockSequence(res_block(ch, ch, +1, resample="down")))
                skip_channels.append(ch)
                ds *= 2

        middle_cross = []
        if tuple(config.cross_attention_windows) == _MIDDLE_CROSS_WINDOWS:
            middle_cross = [CrossModalAttention(ch, config.num_head_channels, frames, window_shift=False)]
        # the middle ResBlocks always attend within both modalities, whatever the attention resolutions
        both = {"video_attention": True, "audio_attention": True}
        self.middle_blocks = BlockSequence(
            res_block(ch, ch, 0, **both), *middle_cross, res_block(ch, ch, 0, **both)
        )
        dilation.counter -= 1

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                blocks = [
                    res_block(ch + skip_channels.pop(), mult * mc, -1, **attention_at(ds)),
                    *cross_block(mult * mc, ds),
                ]
                ch = mult * mc
                if level and i == config.num_res_blocks:
                    blocks.append(res_block(ch, ch, 0, resample="up"))
                    ds //= 2
                self.output_blocks.append(BlockSequence(*blocks))

        self.audio_out = nn.Sequential(ModalNorm(ch), NormSiLU(), AudioConv(ch, config.audio_out_channels, 3))
        self.video_out = nn.Sequential(
            ModalNorm(ch), NormSiLU(), VideoConv3d(ch, config.video_out_channels, 3)
        )
        for p in (*self.audio_out[2].parameters(), *self.video_out[2].parameters()):
            nn.init.zeros_(p)
        self._shifting = [m for m in self.modules() if isinstance(m, CrossModalAttention) and m.window_shift]

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        timesteps: torch.Tensor,
        *,
        audio_timesteps: torch.Tensor | None = None,
        shift: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ε for video (B, F, C, H, W) and audio (B, 1, L) at original timesteps (B,) in 0..999.

        `audio_timesteps` (B,) gives the audio branch its own timestep (same time_embed weights); None means
        the video's. `shift`: None draws each shifting cross-attention block's window shift uniformly from
        [0, F − window] with `generator`, once per call; an int is used for every shifting block; a sequence
        gives one per shifting block in forward order."""
        embed = self.time_embed
        emb_video = embed(timestep_embedding(timesteps, self.config.model_channels))
        emb_audio = (
            emb_video
            if audio_timesteps is None
            else embed(timestep_embedding(audio_timesteps, self.config.model_channels))
        )
        cond = Conditioning(
            emb={"video": emb_video, "audio": emb_audio}, shifts=self._draw_shifts(shift, generator)
        )
        x = {"video": channels_last(video.float()), "audio": channels_last(audio.float())}

        skips = []
        for block in self.input_blocks:
            x = self._run(block, x, cond)
            skips.append(x)
        for block in self.middle_blocks:
            x = self._run(block, x, cond)
        for block in self.output_blocks:
            x = each(cat_channels, x, skips.pop())
            x = self._run(block, x, cond)
        return self.video_out(x["video"]).contiguous(), self.audio_out(x["audio"]).contiguous()

    def _run(self, block: nn.Module, x, cond: Conditioning):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, cond, use_reentrant=False)
        return block(x, cond)

    def _draw_shifts(
        self, shift: int | Sequence[int] | None, generator: torch.Generator | None
    ) -> dict[nn.Module, int]:
        """The window shift of every shifting cross-attention block, in forward order."""
        blocks = self._shifting
        if shift is None:
            device = generator.device if generator is not None else "cpu"
            frames = self.config.frames
            return {
                b: int(torch.randint(0, frames - b.window + 1, (1,), generator=generator, device=device))
                for b in blocks
            }
        if isinstance(shift, int):
            return dict.fromkeys(blocks, shift)
        shifts = [int(s) for s in shift]
        if len(shifts) != len(blocks):
            raise ValueError(
                f"shift: expected {len(blocks)} values (one per shifting block), got {len(shifts)}"
            )
        return dict(zip(blocks, shifts, strict=True))
