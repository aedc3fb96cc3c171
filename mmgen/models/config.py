"""Architecture configs. Defaults are the paper's released models (official-checkpoints.md §1);
field names follow the official constructor arguments so a released config reads the same in both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmgen.config import from_dict
from mmgen.errors import ConfigError

MAX_CHANNELS = 4096  # the widest layer mmgen builds: 8× the paper's (512, 768); wider is a typo, not a model


def check_size(config) -> None:
    """Refuse a width no machine could build (model_channels: 100000000 asked for 40 PB), before any memory is
    allocated for it."""
    if not config.channel_mult or min(config.channel_mult) < 1 or config.model_channels < 32:
        raise ValueError("model_channels must be at least 32 and every channel_mult at least 1")
    if config.model_channels * max(config.channel_mult) > MAX_CHANNELS:
        raise ValueError(f"model_channels × the largest channel_mult must be at most {MAX_CHANNELS}, got "
                         f"{config.model_channels} × {max(config.channel_mult)}")


@dataclass(frozen=True)
class MMUNetConfig:
    """The coupled video/audio U-Net (`mm-unet`). Released: 133,675,524 parameters."""

    video_size: tuple[int, int, int, int] = (16, 3, 64, 64)  # (F, C, H, W)
    audio_size: tuple[int, int] = (1, 25600)  # (C, L)
    model_channels: int = 128
    video_out_channels: int = 3
    audio_out_channels: int = 1
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    cross_attention_resolutions: tuple[int, ...] = (2, 4, 8)
    cross_attention_windows: tuple[int, ...] = (1, 4, 8)
    cross_attention_shift: bool = True
    video_attention_resolutions: tuple[int, ...] = (2, 4, 8)
    audio_attention_resolutions: tuple[int, ...] = (-1,)  # -1: none (the middle block always has one)
    num_heads: int = 4  # single-modal self-attention heads
    num_head_channels: int = 64  # cross-modal attention only: heads = C // num_head_channels
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    fps: float = 10.0  # video frame rate the model was trained at
    sample_rate: int = 16000  # audio sample rate the model was trained at

    def __post_init__(self):
        if len(self.cross_attention_resolutions) != len(self.cross_attention_windows):
            raise ValueError("cross_attention_resolutions and cross_attention_windows differ in length")
        frames, _, height, width = self.video_size
        down = 2 ** (len(self.channel_mult) - 1)
        if height % down or width % down:
            levels = len(self.channel_mult)
            raise ValueError(f"video_size H, W must be divisible by {down} for {levels} levels")
        if self.audio_size[1] % (4 ** (len(self.channel_mult) - 1)):
            raise ValueError("audio length must be divisible by 4 per downsampling level")
        if self.model_channels % 32:
            raise ValueError("model_channels must be a multiple of 32 (GroupNorm groups)")
        check_size(self)
        if self.num_head_channels < 1 or self.num_heads < 1:
            raise ValueError("num_heads and num_head_channels must be at least 1")

    @property
    def frames(self) -> int:
        return self.video_size[0]

    @property
    def audio_length(self) -> int:
        return self.audio_size[1]

    @property
    def seconds(self) -> float:
        """Clip duration; video and audio span the same time."""
        return self.video_size[0] / self.fps


@dataclass(frozen=True)
class SRUNetConfig:
    """The 64→256 per-frame super-resolution U-Net (`sr-unet`). Released: 311,027,910 parameters."""

    image_size: int = 256  # large side (output)
    small_size: int = 64  # low-res input side (not used by the network itself)
    in_channels: int = 3  # the network sees 2× this: x ⊕ upsampled low_res
    model_channels: int = 192
    out_channels: int = 6  # eps (3) ⊕ learned-range variance value (3)
    num_res_blocks: int = 2
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    # Downsample factors ds, as the official code uses them.
    attention_resolutions: tuple[int, ...] = (8, 16, 32)
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    dropout: float = 0.0
    use_scale_shift_norm: bool = True

    def __post_init__(self):
        if self.model_channels % 32:
            raise ValueError("model_channels must be a multiple of 32 (GroupNorm groups)")
        check_size(self)
        if self.num_heads < 1 and self.num_head_channels < 1:
            raise ValueError("num_heads or num_head_channels must be at least 1")
        down = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % down:
            raise ValueError(f"image_size must be divisible by {down} for {len(self.channel_mult)} levels")


# name → config dataclass (mmgen.models.architectures pairs each with its model class)
CONFIGS: dict[str, type] = {"mm-unet": MMUNetConfig, "sr-unet": SRUNetConfig}


def config_for(arch: str, fields: dict[str, Any] | None = None, where: str = "config"):
    """The config dataclass of `arch` built strictly from `fields` (None: the released config)."""
    if arch not in CONFIGS:
        raise ConfigError(f"{where}: unknown architecture {arch!r} (known: {', '.join(CONFIGS)})")
    return from_dict(CONFIGS[arch], fields or {}, where)
