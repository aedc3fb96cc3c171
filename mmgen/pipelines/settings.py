"""What a user asks of one run, as one frozen dataclass per job kind, checked once when it is built.

Both edges build these: the commands from their flags (cli/options.py makes one flag per field) and a batch
file from each job's YAML map (pipelines/batch/schema.py reads one key per field). The pipelines take them
typed, so a setting is declared once and its limit is the same everywhere.

Where a new option goes: a field on the class of the kinds it applies to (RunSettings: all of them), with its
range in LIMITS if it is a number, and its flag in cli/options.FLAGS. Commands and batch files then have it.
A check beyond a range goes in that class's __post_init__ (calling super's first), raising InvalidSetting;
a repeatable option is a tuple field. Fields must stay hashable: a batch shares checked runs by their settings.

Each field's value is checked against its annotation when built, by the same converter that reads a batch file's
keys (mmgen.config.converted), so a settings object built from Python takes what a batch file takes and refuses
the rest with InvalidSetting naming the field: a whole number for an int (never a bool, nor a float such as 7.0,
as the flags refuse `--seed 7.0`); any number for a float (a str never: `5e-4` read as a number is a YAML file's text's); one of the words of a Literal; a list or tuple for a
repeatable option (held as a tuple); a pathlib.Path for a file named by a str field (model, adapter).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_type_hints

from mmgen.adapters.use import AdapterUse
from mmgen.config import FieldError, converted
from mmgen.diffusion.sampling_config import MAX_GUIDANCE_SCALE
from mmgen.errors import InvalidSetting, UsageError
from mmgen.media.delivery import LOUDNESS_RANGE, RATES, Delivery
from mmgen.pipelines.outputs import OutputPaths, beside
from mmgen.runtime.device_names import check_device_name, check_precision_name
from mmgen.terminal import number_text
from mmgen.weights.names import check_reference

Sampler = Literal["dpm++", "ddim", "ddpm", "paper"]
Guidance = Literal["replacement", "gradient"]


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
            low, high = (number_text(bound) for bound in (self.low, self.high))
            bound = f"at least {low}" if math.isinf(self.high) else f"between {low} and {high}"
            raise InvalidSetting(field, f"must be {bound}, got {number_text(value)}")


SEED_BITS = 32  # torch's CPU generator (mt19937) keeps a seed's low 32 bits: seeds 2^32 apart made the same clip


def seed_taken(seed: int) -> int:
    """The seed a generator takes of `seed`: its low SEED_BITS bits (what a seed past the range made, before it was
    refused)."""
    return seed % 2**SEED_BITS


@dataclass(frozen=True)
class SeedLimit(Limit):
    """The range of a seed, 0 to 2^32 - 1: every seed a generator tells apart. A larger one is refused, naming the
    seed in range that makes what it made (its low 32 bits), rather than taken as a different seed it is not."""

    low: float = 0
    high: float = 2**SEED_BITS - 1

    def check(self, field: str, value: float | None) -> None:
        if isinstance(value, int) and value > self.high:
            raise InvalidSetting(field, f"must be between 0 and {self.high}, got {value}",
                                 hint=f"seed {seed_taken(value)} makes what it made before: the random generator keeps only a "
                                      f"seed's low {SEED_BITS} bits")
        super().check(field, value)


# The one table of number limits: settings check it when built, and the command flags show and apply it.
LIMITS: dict[str, Limit] = {
    "num": Limit(1, 100_000),
    "steps": Limit(1, 1000),
    "seed": SeedLimit(),
    "guidance_scale": Limit(0.0, MAX_GUIDANCE_SCALE),
    "overlap": Limit(0.0, 0.75),  # a window must bring new frames: at most 3/4 of it is the previous one's
    "mix": Limit(0.0, 1.0),
}
# Delivery settings also take a word ("off", "model"), so their number ranges apply to numbers only.
DELIVERY_LIMITS = {"loudness": Limit(*LOUDNESS_RANGE), "sample_rate": Limit(*RATES)}
Loudness = float | Literal["off", False] | None  # LUFS; "off" (a bare `off` in YAML reads as false) or None: as made
SampleRate = int | Literal["model"] | None  # Hz; "model" or None: the model's own rate


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The annotation of each field of settings class `cls`, resolved (the module's annotations are strings)."""
    return get_type_hints(cls)


@functools.cache
def _defaults(cls: type) -> dict[str, Any]:
    """The default of each field of settings class `cls`: a setting other than its default was given."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


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
    precision: str = "auto"  # auto | fp32 | fp16 | bf16, in any case: held lower-case (check_precision_name)
    loudness: Loudness = -16.0  # integrated loudness of the delivered sound (EBU R128), true peak ≤ −1 dBTP
    sample_rate: SampleRate = 48_000  # of the delivered sound (WAV and audio track)
    adapter: str | tuple[str, ...] = ()  # LoRA adapters merged into the model: FILE-or-NAME[:WEIGHT] each

    conditional: ClassVar[bool] = False  # a known modality (the user's file) steers sampling
    # Switches that make one choice between them (retake's video/audio): a layer that turns one on makes the choice,
    # so the switches of the layers beneath it (a batch's `defaults:`) are dropped; one layer turning on two is refused.
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()
    one_choice: ClassVar[str] = ""  # why (check_choices' line)
    # Settings that mean something only where the run guides by gradient (a scale), or only for some runs of the
    # kind (`ignorable`): given (not their default) for a run that takes no notice of them, a job's own or a flag is
    # refused (session.prepare); a batch's `defaults:` one is left out.
    gradient_only: ClassVar[tuple[str, ...]] = ()
    ignorable: ClassVar[tuple[str, ...]] = ()

    def unmeant(self, guidance: str) -> dict[str, tuple[str, str]]:
        """The settings given that a run guiding by `guidance` takes no notice of, each with why and a hint."""
        whose = "as asked" if getattr(self, "guidance", None) else "the model's own setting"
        unmeant = {} if guidance == "gradient" else dict.fromkeys(self.gradient_only, (
            f"scales gradient guidance only, and this run guides by {guidance} ({whose})",
            "ask for gradient guidance with it, or leave the scale out"))
        unmeant |= self.ignored()
        return {k: why for k, why in unmeant.items() if getattr(self, k) != _defaults(type(self))[k]}

    def ignored(self) -> dict[str, tuple[str, str]]:
        """The `ignorable` settings this run takes no notice of whatever its guidance, each with why and a hint."""
        return {}

    @classmethod
    def layered(cls, beneath: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
        """The settings of `over` laid over those of `beneath` (a batch job's own over its `defaults:`)."""
        chosen = {key for group in cls.one_of if any(over.get(key) for key in group) for key in group}
        return {k: v for k, v in beneath.items() if k not in chosen} | dict(over)

    @classmethod
    def check_choices(cls, layer: Mapping[str, Any]) -> None:
        """InvalidSetting (naming the first) where one layer — a job's own options, a batch's `defaults:`, the
        flags — turns on two switches of one `one_of` group."""
        for group in cls.one_of:
            on = [key for key in group if layer.get(key)]
            if len(on) > 1:
                raise InvalidSetting(on[0], cls.one_choice)

    def __post_init__(self):
        types = _field_types(type(self))
        for field in dataclasses.fields(self):
            try:  # the type (and words) its annotation gives, as a batch file's key is read: 1 → 1.0, a list → a tuple
                value = converted(types[field.name], getattr(self, field.name), type(self).__name__, field.name)
            except FieldError as e:
                raise InvalidSetting(e.field, e.reason) from None
            object.__setattr__(self, field.name, value)
            if field.name in LIMITS:
                LIMITS[field.name].check(field.name, value)
            elif field.name in DELIVERY_LIMITS and isinstance(value, int | float) and not isinstance(value, bool):
                DELIVERY_LIMITS[field.name].check(field.name, value)
        check_device_name(self.device)  # before the output checks: a cheap word, refused at once for any -n
        object.__setattr__(self, "precision", check_precision_name(self.precision))
        try:
            check_reference(str(self.model), "model")
        except UsageError as e:
            raise InvalidSetting("model", e.message) from None
        if isinstance(self.adapter, str):  # one adapter, as a batch file may write it
            object.__setattr__(self, "adapter", (self.adapter,))
        self.adapters()
        self.check_choices({key: getattr(self, key) for group in self.one_of for key in group})

    def adapters(self) -> tuple[AdapterUse, ...]:
        """The adapters to merge into the model, each with its weight (1 unless FILE:WEIGHT says otherwise)."""
        return tuple(AdapterUse.parse(text) for text in self.adapter)

    def delivery(self) -> Delivery:
        """How the sound is handed over: the loudness target and sample rate, None where kept as made."""
        loudness = self.loudness if isinstance(self.loudness, int | float) and self.loudness is not False else None
        return Delivery(loudness, self.sample_rate if isinstance(self.sample_rate, int) else None)

    def sampling_overrides(self) -> dict:
        """The SamplingConfig fields these settings set over the model's or preset's (the ones not None)."""
        return {k: v for k, v in {"sampler": self.sampler, "steps": self.steps}.items() if v is not None}

    def upscaling(self) -> bool | None:
        """Whether to super-resolve the video: True, False, or None for "when the upsampler is available"."""
        return False

    def outputs(self, mp4: Path) -> OutputPaths:
        """The files a run with these settings writes for the output `mp4`."""
        return beside(mp4)

    def asked_rate(self) -> int | None:
        """The sample rate the sound written is asked for (--sample-rate HZ); None where it keeps a rate of its own
        (`model`, the input's) — which mmgen.media.containers fits to the container — or no sound is made."""
        return self.delivery().sample_rate


@dataclass(frozen=True)
class GenerateSettings(RunSettings):
    """`mmgen generate`: clips from noise."""

    num: int = 1  # clips to make; clip k uses seed + k
    upscale: bool | None = None
    previews: bool = True  # also a contact sheet of the frames and a spectrogram of the sound

    def __post_init__(self):
        super().__post_init__()
        last = LIMITS["seed"].high
        if self.seed is not None and self.seed + self.num - 1 > last:  # the sidecar's seed must make its clip again
            past = self.seed + self.num - 1 - last  # older versions wrapped these clips' seeds to 0, 1, …
            raise InvalidSetting("seed", f"with num {self.num}, seed + num - 1 must be at most {last}, "
                                         f"got {self.seed + self.num - 1} (split it: seed {self.seed} with num "
                                         f"{last - self.seed + 1}, and seed 0 with num {past}, make the clips older "
                                         f"versions made, whose seeds wrapped to 0; or lower the seed to at most "
                                         f"{last - self.num + 1})")

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
    gradient_only: ClassVar[tuple[str, ...]] = ("guidance_scale",)
    given: ClassVar[str]  # the modality the input file provides

    def sampling_overrides(self) -> dict:
        chosen = {"guidance": self.guidance, "guidance_scale": self.guidance_scale}
        return {**super().sampling_overrides(), **{k: v for k, v in chosen.items() if v is not None}}

    def streams(self) -> tuple[str, ...]:
        """The streams the input file must have."""
        return (self.given,)

    @property
    def kept(self) -> str:
        """The input's stream the output keeps (copied, or re-encoded where its container cannot hold it)."""
        return self.given


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
    loudness: Loudness = None  # the input's own sound is copied as it is unless a loudness or rate is asked for
    sample_rate: SampleRate = None

    given: ClassVar[str] = "audio"

    def upscaling(self) -> bool | None:
        return self.upscale


@dataclass(frozen=True)
class RetakeSettings(MatchingSettings):
    """`mmgen retake`: one modality of a clip made again within time ranges, the rest kept."""

    ranges: tuple[str, ...] = ()  # "A:B" in seconds; at least one
    video: bool = False  # remake the picture (clips at the model's frame size) instead of the sound
    audio: bool = False  # remake the sound: the default, said outright (--audio); refused together with video
    wav: bool = False  # also write the sound alone as OUT.wav (a sound retake)

    # two switches, not one video/audio pair: with a pair the last would win
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = (("video", "audio"),)
    one_choice: ClassVar[str] = "a retake remakes the picture (video) or the sound (audio), not both"

    @property
    def modality(self) -> str:
        return "video" if self.video else "audio"

    @property
    def kept(self) -> str:
        return "audio" if self.video else "video"

    def streams(self) -> tuple[str, ...]:
        return ("video", "audio")

    ignorable: ClassVar[tuple[str, ...]] = ("wav", "loudness", "sample_rate")

    def ignored(self) -> dict[str, tuple[str, str]]:
        why = ("a picture retake (video) keeps the input's sound as it is", "leave it out, or retake the sound")
        return dict.fromkeys(self.ignorable, why) if self.video else {}

    def outputs(self, mp4: Path) -> OutputPaths:
        return beside(mp4, wav=self.wav and not self.video)

    def asked_rate(self) -> int | None:
        return None if self.video else super().asked_rate()  # a picture retake copies the sound as it is


KINDS: dict[str, type[RunSettings]] = {
    "generate": GenerateSettings,
    "soundtrack": SoundtrackSettings,
    "animate": AnimateSettings,
    "retake": RetakeSettings,
}
