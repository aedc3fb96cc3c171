"""What a user asks of one run, as one frozen dataclass per job kind, checked once when it is built.

Both edges build these: the commands from their flags (cli/options.py makes one flag per field) and a batch
file from each job's YAML map (pipelines/batch/schema.py reads one key per field). The pipelines take them
typed, so a setting is declared once and its limit is the same everywhere.

Where a new option goes: a field on the class of the kinds it applies to (RunSettings: all of them), with its
range in LIMITS if it is a number, and its flag in cli/options.FLAGS. Commands and batch files then have it.
A check beyond a range goes in that class's __post_init__ (calling super's first), raising InvalidSetting;
a repeatable option is a tuple field. Fields must stay hashable: a batch shares checked runs by their settings.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from mmgen.errors import UsageError
from mmgen.pipelines.outputs import OutputPaths, beside

Sampler = Literal["dpm++", "ddim", "ddpm", "paper"]
Guidance = Literal["replacement", "gradient"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]


class InvalidSetting(UsageError, ValueError):
    """A setting outside its limits (exit 2). A ValueError too, so YAML parsing (mmgen.config) reports it with
    the file and line; `field` lets the commands name their flag instead."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Limit:
    """The closed range of a number setting; a float must also be finite (nan and inf never are)."""

    low: float
    high: float = math.inf

    def check(self, field: str, value: float | None) -> None:
        if value is None:
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidSetting(field, f"must be a finite number, got {value}")
        if not self.low <= value <= self.high:
            bound = f"at least {self.low}" if math.isinf(self.high) else f"between {self.low} and {self.high}"
            raise InvalidSetting(field, f"must be {bound}, got {value}")


# The one table of number limits: settings check it when built, and the command flags show and apply it.
LIMITS: dict[str, Limit] = {
    "num": Limit(1, 100_000),
    "steps": Limit(1, 1000),
    "seed": Limit(0, 2**63 - 1),
    "guidance_scale": Limit(0.0),
    "overlap": Limit(0.0, 0.75),  # a window must bring new frames: at most 3/4 of it is the previous one's
    "mix": Limit(0.0, 1.0),
}


@dataclass(frozen=True)
class RunSettings:
    """What every kind of run takes: the model, how to sample, the seed, where to run. None: the model's own
    setting (its registry entry, else the balanced preset)."""

    model: str = "demo"  # registry name, or path to a .safetensors written by mmgen
    preset: str | None = None  # sampling preset (fast, balanced, paper) laid over the model's own settings
    sampler: Sampler | None = None
    steps: int | None = None
    seed: int | None = None  # None: a random one, recorded in the sidecar
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Precision = "auto"

    conditional: ClassVar[bool] = False  # a known modality (the user's file) steers sampling

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if field.name in LIMITS:
                LIMITS[field.name].check(field.name, getattr(self, field.name))

    def sampling_overrides(self) -> dict:
        """The SamplingConfig fields these settings set over the model's or preset's (the ones not None)."""
        return {k: v for k, v in {"sampler": self.sampler, "steps": self.steps}.items() if v is not None}

    def upscaling(self) -> bool | None:
        """Whether to super-resolve the video: True, False, or None for "when the upsampler is available"."""
        return False

    def outputs(self, mp4: Path) -> OutputPaths:
        """The files a run with these settings writes for the output `mp4`."""
        return beside(mp4)


@dataclass(frozen=True)
class GenerateSettings(RunSettings):
    """`mmgen generate`: clips from noise."""

    num: int = 1  # clips to make; clip k uses seed + k
    upscale: bool | None = None
    previews: bool = True  # also a contact sheet of the frames and a spectrogram of the sound

    def upscaling(self) -> bool | None:
        return self.upscale

    def outputs(self, mp4: Path) -> OutputPaths:
        return beside(mp4, previews=self.previews)


@dataclass(frozen=True)
class MatchingSettings(RunSettings):
    """What the kinds that make one modality to match a user's file of the other share."""

    guidance: Guidance | None = None
    guidance_scale: float | None = None  # λ of gradient guidance
    overlap: float = 0.25  # fraction of each model window shared with the previous one

    conditional: ClassVar[bool] = True
    given: ClassVar[str]  # the modality the input file provides

    def sampling_overrides(self) -> dict:
        chosen = {"guidance": self.guidance, "guidance_scale": self.guidance_scale}
        return {**super().sampling_overrides(), **{k: v for k, v in chosen.items() if v is not None}}

    def streams(self) -> tuple[str, ...]:
        """The streams the input file must have."""
        return (self.given,)


@dataclass(frozen=True)
class SoundtrackSettings(MatchingSettings):
    """`mmgen soundtrack`: new audio for a video."""

    mix: float = 0.0  # how much of the input's own audio to blend in: 0 none, 1 only it
    wav: bool = False  # also write the new audio alone as OUT.wav

    given: ClassVar[str] = "video"

    def streams(self) -> tuple[str, ...]:
        return ("video", "audio") if self.mix else ("video",)

    def outputs(self, mp4: Path) -> OutputPaths:
        return beside(mp4, wav=self.wav)


@dataclass(frozen=True)
class AnimateSettings(MatchingSettings):
    """`mmgen animate`: new video for a sound."""

    upscale: bool | None = None

    given: ClassVar[str] = "audio"

    def upscaling(self) -> bool | None:
        return self.upscale


KINDS: dict[str, type[RunSettings]] = {
    "generate": GenerateSettings,
    "soundtrack": SoundtrackSettings,
    "animate": AnimateSettings,
}
