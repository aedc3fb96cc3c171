"""What mmgen hands over as sound: resampled to the delivery rate (48 kHz by default, or the model's own) and
normalised to a loudness target (−16 LUFS by default, or the model's own level), optionally blended with the
input's own sound — both brought to the target first, so `mix` means a share of equally loud sounds."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmgen.errors import UsageError
from mmgen.media.loudness import DEFAULT_TARGET, LoudnessReport, integrated_loudness, normalise, true_peak
from mmgen.media.remux import fit_length
from mmgen.media.resample import resample

DEFAULT_SAMPLE_RATE = 48_000  # what video editors and players expect
RATES = (8_000, 96_000)  # the range accepted for --sample-rate
LOUDNESS_RANGE = (-70.0, 0.0)  # LUFS accepted for --loudness (−70 is BS.1770's absolute gate)


@dataclass(frozen=True)
class Delivery:
    """loudness: LUFS target, None keeps the model's level; sample_rate: Hz, None keeps the model's rate."""

    loudness: float | None = DEFAULT_TARGET
    sample_rate: int | None = DEFAULT_SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.loudness is not None and not LOUDNESS_RANGE[0] <= self.loudness < LOUDNESS_RANGE[1]:
            raise UsageError(f"--loudness must be between {LOUDNESS_RANGE[0]:g} and {LOUDNESS_RANGE[1]:g} LUFS "
                             f"(or off), got {self.loudness:g}")
        if self.sample_rate is not None and not RATES[0] <= self.sample_rate <= RATES[1]:
            raise UsageError(f"--sample-rate must be between {RATES[0]} and {RATES[1]} Hz (or model), "
                             f"got {self.sample_rate}")

    @classmethod
    def parse(cls, loudness: str | float | None, sample_rate: str | int | None) -> Delivery:
        """From the command line's words: `--loudness -16|off`, `--sample-rate 48000|model`."""
        return cls(_word(loudness, "off", float, "--loudness", DEFAULT_TARGET),
                   _word(sample_rate, "model", int, "--sample-rate", DEFAULT_SAMPLE_RATE))

    def rate(self, model_rate: int) -> int:
        return self.sample_rate or model_rate


@dataclass(frozen=True)
class Delivered:
    audio: torch.Tensor  # (1, L) at sample_rate
    sample_rate: int
    loudness: LoudnessReport  # before: the model's sound; after: what was delivered
    target: float | None

    def to_json(self) -> dict:
        return {"sample_rate": self.sample_rate, "loudness_target": self.target, **self.loudness.to_json()}


def deliver(
    audio: torch.Tensor,
    model_rate: int,
    delivery: Delivery,
    *,
    seconds: float | None = None,
    own: torch.Tensor | None = None,
    mix: float = 0.0,
) -> Delivered:
    """The model's audio (1, L) at `model_rate` as delivered: resampled, cut or padded to `seconds` when given,
    blended with `own` (1, L') — the input's sound at the delivery rate — by `mix`, brought to the target."""
    rate = delivery.rate(model_rate)
    sound = resample(audio.detach().float().cpu(), model_rate, rate)
    if seconds is not None:
        sound = fit_length(sound, round(seconds * rate))
    before = integrated_loudness(sound, rate)
    if mix > 0 and own is not None:
        own = fit_length(own.float(), sound.shape[-1])
        if delivery.loudness is not None:
            sound, own = (normalise(x, rate, delivery.loudness)[0] for x in (sound, own))
        sound = (1 - mix) * sound + mix * own
    if delivery.loudness is not None:
        sound, report = normalise(sound, rate, delivery.loudness)
        report = LoudnessReport(before, report.after, report.true_peak)
    else:
        peak = true_peak(sound) if sound.any() else None
        report = LoudnessReport(before, integrated_loudness(sound, rate), peak)
    return Delivered(sound, rate, report, delivery.loudness)


def _word(value, word: str, kind: type, flag: str, default):
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lower() == word:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} takes a number or '{word}', got {value!r}") from None
