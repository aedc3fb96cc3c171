"""Architecture configs. Defaults are the paper's released models (official-checkpoints.md §1);
field names follow the official constructor arguments so a released config reads the same in both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmgen.config import from_dict
from mmgen.errors import ConfigError

MAX_CHANNELS = 4096  # the widest layer mmgen builds: 8× the paper's (512, 768); wider is a typo, not a model
# The largest clip a model may be made for, generous beside the paper's 16 × 3 × 64 × 64 video and 25,600 samples of
# audio: each side and the whole, so that a config's sizes (which decide every sample's allocation) cannot ask for
# gigabytes before anything is checked. An SR model's image side has the same bound.
MAX_FRAMES = 1024
MAX_MEDIA_CHANNELS = 4  # RGB(A) video; up to 4 audio channels
MAX_SIDE = 1024  # video height, width; an SR model's image_size
MAX_VIDEO_ELEMENTS = 2**24  # F × C × H × W: 64 frames of 3 × 256 × 256 fit, 4 frames of 3 × 2048 × 2048 do not
MAX_AUDIO_LENGTH = 2**22  # samples: 87 s at 48 kHz
FPS_RANGE = (1.0, 240.0)  # frames per second a model may be trained at
SAMPLE_RATE_RANGE = (1_000, 192_000)  # Hz
MAX_RES_BLOCKS = 16  # per level: the paper's models have 2; 10,000,000 built layers until memory ran out
MAX_OUT_CHANNELS = 2 * MAX_MEDIA_CHANNELS  # an SR model predicts ε and a variance value per channel: 6 for RGB


def check_size(config) -> None:
    """Refuse a width no machine could build (model_channels: 100000000 asked for 40 PB), before any memory is
    allocated for it."""
    if not config.channel_mult or min(config.channel_mult) < 1 or config.model_channels < 32:
        raise ValueError("model_channels must be at least 32 and every channel_mult at least 1")
    if config.model_channels * max(config.channel_mult) > MAX_CHANNELS:
        raise ValueError(f"model_channels × the largest channel_mult must be at most {MAX_CHANNELS}, got "
                         f"{config.model_channels} × {max(config.channel_mult)}")


def check_layers(config, attention: list[int], heads: dict[str, int], channels: dict[str, int]) -> None:
    """Refuse a config whose layers no model has, before any is built: num_res_blocks 10,000,000 built layers until
    memory ran out, num_heads 1,000,000 or a count not dividing an attention layer's channels failed only once
    sampling had begun, dropout NaN or 5.0 once building. `attention`: the channels of every attention layer the
    heads split; `heads`: the head counts given (-1: not used); `channels`: each input or output width given."""
    if not 1 <= config.num_res_blocks <= MAX_RES_BLOCKS:
        raise ValueError(f"num_res_blocks must be between 1 and {MAX_RES_BLOCKS}, got {config.num_res_blocks}")
    if not 0.0 <= config.dropout <= 1.0:  # NaN fails too
        raise ValueError(f"dropout must be between 0 and 1, got {config.dropout}")
    for name, value in channels.items():
        if not 1 <= value <= MAX_OUT_CHANNELS:
            raise ValueError(f"{name} must be between 1 and {MAX_OUT_CHANNELS}, got {value}")
    for name, value in heads.items():
        if value != -1 and not all(1 <= value <= width and width % value == 0 for width in attention):
            raise ValueError(f"{name} must divide the channels of every attention layer "
                             f"({', '.join(map(str, sorted(set(attention))))}), got {value}")


def check_clip(config: MMUNetConfig) -> None:
    """Refuse a clip no real model makes, before a sample of it is allocated: video_size [100000, 3, 100000, 100000]
    asked for 12 PB of noise, cross-attention windows of 10⁹ frames for 1.6 TB, a sample_rate of 2³¹ Hz for a
    resampler's 2 GB, and an fps of 10⁻⁶ divided by zero."""
    video_size, audio_size = config.video_size, config.audio_size
    frames, channels, height, width = video_size
    if not (1 <= frames <= MAX_FRAMES and 1 <= channels <= MAX_MEDIA_CHANNELS
            and 1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"video_size (F, C, H, W) must be within (1..{MAX_FRAMES}, 1..{MAX_MEDIA_CHANNELS}, "
                         f"1..{MAX_SIDE}, 1..{MAX_SIDE}), got {list(video_size)}")
    if frames * channels * height * width > MAX_VIDEO_ELEMENTS:
        raise ValueError(f"video_size F × C × H × W must be at most {MAX_VIDEO_ELEMENTS:,} values, got "
                         f"{frames * channels * height * width:,} ({list(video_size)})")
    if not (1 <= audio_size[0] <= MAX_MEDIA_CHANNELS and 1 <= audio_size[1] <= MAX_AUDIO_LENGTH):
        raise ValueError(f"audio_size (C, L) must be within (1..{MAX_MEDIA_CHANNELS}, 1..{MAX_AUDIO_LENGTH:,}), "
                         f"got {list(audio_size)}")
    if not FPS_RANGE[0] <= config.fps <= FPS_RANGE[1]:  # NaN fails too
        raise ValueError(f"fps must be between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g}, got {config.fps}")
    if not SAMPLE_RATE_RANGE[0] <= config.sample_rate <= SAMPLE_RATE_RANGE[1]:
        raise ValueError(f"sample_rate must be between {SAMPLE_RATE_RANGE[0]:,} and {SAMPLE_RATE_RANGE[1]:,} Hz, got "
                         f"{config.sample_rate}")
    if not all(1 <= window <= frames for window in config.cross_attention_windows):
        raise ValueError(f"every cross_attention_windows must be between 1 and the {frames} frames, got "
                         f"{list(config.cross_attention_windows)}")


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
        check_clip(self)
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
        widths = [self.model_channels * mult for mult in self.channel_mult]
        attended = set(self.video_attention_resolutions) | set(self.audio_attention_resolutions)
        self_attention = [width for level, width in enumerate(widths) if 2**level in attended] + widths[-1:]
        cross = [width for level, width in enumerate(widths) if 2**level in self.cross_attention_resolutions]
        check_layers(self, self_attention, {"num_heads": self.num_heads},
                     {"video_out_channels": self.video_out_channels, "audio_out_channels": self.audio_out_channels})
        check_layers(self, cross, {"num_head_channels": self.num_head_channels}, {})

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
        if not (1 <= self.small_size <= MAX_SIDE and 1 <= self.image_size <= MAX_SIDE):
            raise ValueError(f"small_size and image_size must be within 1..{MAX_SIDE}, got {self.small_size} and "
                             f"{self.image_size}")
        down = 2 ** (len(self.channel_mult) - 1)
        if self.image_size % down:
            raise ValueError(f"image_size must be divisible by {down} for {len(self.channel_mult)} levels")
        widths = [self.model_channels * mult for mult in self.channel_mult]
        attention = [width for level, width in enumerate(widths) if 2**level in self.attention_resolutions]
        attention += widths[-1:]  # the middle block's
        heads = ({"num_head_channels": self.num_head_channels} if self.num_head_channels != -1 else
                 {"num_heads": self.num_heads, "num_heads_upsample": self.num_heads_upsample})
        check_layers(self, attention, heads, {"in_channels": self.in_channels, "out_channels": self.out_channels})


# name → config dataclass (mmgen.models.architectures pairs each with its model class)
CONFIGS: dict[str, type] = {"mm-unet": MMUNetConfig, "sr-unet": SRUNetConfig}


def config_for(arch: str, fields: dict[str, Any] | None = None, where: str = "config"):
    """The config dataclass of `arch` built strictly from `fields` (None: the released config)."""
    if arch not in CONFIGS:
        raise ConfigError(f"{where}: unknown architecture {arch!r} (known: {', '.join(CONFIGS)})")
    return from_dict(CONFIGS[arch], fields or {}, where)
