"""What mmgen hands over as sound: resampled to the delivery rate and normalised to the loudness target
(mmgen.media.delivery), optionally blended with the input's own sound — both brought to the target first, so
`mix` means a share of equally loud sounds."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from mmgen.errors import in_callers_words
from mmgen.media.delivery import DEFAULT_TARGET, Delivery
from mmgen.media.encoded_peak import lossy, under_ceiling
from mmgen.media.loudness import (
    TRUE_PEAK_CEILING,
    LoudnessReport,
    integrated_loudness,
    level,
    normalise,
    true_peak,
)
from mmgen.media.notes import said_once
from mmgen.media.remux import fit_length
from mmgen.media.resample import resample

SHORT_LU = 0.05  # a one-gain sound this far under its target or more is said to be short of it (the sidecar rounds
# to 0.01)
MISSED_LU = 0.5  # a limited sound this far from its target or more is said to miss it (the limiter's rounds land
# within a few tenths)


@dataclass(frozen=True)
class Delivered:
    audio: torch.Tensor  # (1, L) at sample_rate ((C, L): a retake's of a sound with C channels)
    sample_rate: int
    loudness: LoudnessReport  # before: the model's sound; after: what was delivered
    target: float | None
    one_gain: bool = False  # given one gain (no limiter, no blend): short of its target, said so as such

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
    weights: tuple[float, ...] | None = None,
    limit: bool = True,
    held: bool = False,
    overwrite: bool = False,
) -> Delivered:
    """The model's audio (1, L) at `model_rate` as delivered: resampled, cut or padded to `seconds` when given,
    blended with `own` (1, L') — the input's sound at the delivery rate — by `mix`, brought to the target. Sound of
    C channels (C, L) (a retake's, at the delivery rate) is measured and gained together, its channels weighted by
    `weights` (loudness.channel_weights). `limit`: False gives the sound one gain (loudness.level's), which may leave
    it short of the target: said once (`say_if_short`) where it is written (as_encoded), at the level it plays at.
    `held`: every file it is written to holds float samples past full scale (tracks.float_pcm), so sound at its own
    level is not said to be clipped. `overwrite`: `audio` (float32, at the delivery rate) is the caller's to lose, and
    is brought to the target in its own memory (a retake's hour of sound is not copied)."""
    rate = delivery.rate(model_rate)
    sound = resample(audio.detach().float().cpu(), model_rate, rate)
    if seconds is not None:
        sound = fit_length(sound, round(seconds * rate))
    before = integrated_loudness(sound, rate, weights)  # measured once: normalising takes it from here
    blend = mix > 0 and own is not None
    if blend:
        own = fit_length(own.float(), sound.shape[-1])
    if delivery.loudness is None:
        if blend:
            sound = (1 - mix) * sound + mix * own
        peak = true_peak(sound) if sound.any() else None
        report = LoudnessReport(before, integrated_loudness(sound, rate, weights) if blend else before, peak)
        default = in_callers_words(f"--loudness {DEFAULT_TARGET:g}", f"loudness={DEFAULT_TARGET:g}",
                                   f"`loudness: {DEFAULT_TARGET:g}`")
        if not held:
            say_if_clipped(sound, f"{default} (the default) keeps it under {TRUE_PEAK_CEILING:g} dBTP")
        return Delivered(sound, rate, report, None)
    if blend:  # each brought to the target in a copy of its own, blended into the first, which is normalised in place
        sound = level(sound, rate, delivery.loudness, weights=weights, before=before)
        sound.mul_(1 - mix).add_(level(own, rate, delivery.loudness), alpha=mix)
        sound, report = normalise(sound, rate, delivery.loudness, weights=weights, overwrite=True)
    else:
        sound, report = normalise(sound, rate, delivery.loudness, weights=weights, before=before, limit=limit,
                                  overwrite=overwrite and sound is audio)
    return Delivered(sound, rate, LoudnessReport(before, report.after, report.true_peak), delivery.loudness,
                     one_gain=not limit and not blend)


def as_encoded(delivered: Delivered, encoder: str, layout: str = "mono") -> Delivered:
    """`delivered` as the output's `encoder` is to be given it: where it has a loudness target, lowered until its
    encode decodes under the true-peak ceiling (a lossy encoder lifts peaks: encoded_peak); its report's loudness
    after and true peak those of the file's sound as it decodes, and said where it misses the target
    (say_if_short). A lossless encoder's sound is `delivered` as it is: its samples, as measured already. Every
    command that writes a delivered sound writes this one."""
    if lossy(encoder):
        ceiling = TRUE_PEAK_CEILING if delivered.target is not None else None
        fit = under_ceiling(delivered.audio, delivered.sample_rate, encoder, layout, ceiling)
        report = LoudnessReport(delivered.loudness.before, fit.loudness, fit.true_peak)
        delivered = dataclasses.replace(delivered, audio=fit.audio, loudness=report)
    if delivered.target is not None:
        say_if_short(delivered.loudness.after, delivered.target, one_gain=delivered.one_gain)
    return delivered


def say_if_clipped(sound: torch.Tensor, why: str) -> None:
    """Sound written at its own level (delivered with `--loudness off`, a training preview) whose samples pass full
    scale is clipped where it is written (tracks.audio_frames: every file holds [-1, 1], a 16-bit one no more): said
    once, whatever writes it, with the highest peak of a command's files (notes.held_back) and `why` (the way out,
    or why it is at that level)."""
    if (peak_db := _over_full_scale(sound)) is not None:
        said_once("clipped", functools.partial(_clipping, why=why), peak_db)


def say_if_short(reached: float | None, target: float, one_gain: bool = True) -> None:
    """Sound whose measured level `reached` misses the `target` LUFS — by SHORT_LU or more given one gain (a
    retake's: its true peak stopped it short), by MISSED_LU or more limited (the limiter and the ceiling held it
    down) — or lands over it (at a level so low that BS.1770's absolute gate leaves its quietest parts unmeasured):
    said once per command and reason, with the furthest miss and how many files missed."""
    if reached is None:
        return
    reached = round(reached, 2)  # as the sidecar records it (LoudnessReport.to_json): the note says what it says
    flag = in_callers_words(f"--loudness {target:g}", f"loudness={target:g}", f"`loudness: {target:g}`")
    if (over := reached - target) >= (SHORT_LU if one_gain else MISSED_LU):
        said_once("over", functools.partial(_short, flag=flag, reached=reached, why=_GATED, side="over"), over)
    elif (short := target - reached) >= (SHORT_LU if one_gain else MISSED_LU):
        why = _ONE_GAIN if one_gain else _LIMITED
        said_once(f"short {one_gain}", functools.partial(_short, flag=flag, reached=reached, why=why), short)


def say_if_clamped(sound: torch.Tensor) -> None:
    """The model's sound as sampled, before delivery, whose samples pass full scale is clamped to [-1, 1] there
    (pipelines.clips.Clip.sampled), as the official code does: said as the clipping note is (once, with the highest
    peak of a command's clips), as the model's, not delivery's — sampling with no per-step clipping (the paper's)
    overshoots, and no `--loudness` brings back what was cut."""
    if (peak_db := _over_full_scale(sound)) is not None:
        said_once("clamped", _clamping, peak_db)


def _over_full_scale(sound: torch.Tensor) -> float | None:
    """The peak of `sound` in dBFS where it passes full scale (±1), else None."""
    peak = float(sound.detach().abs().max()) if sound.numel() else 0.0
    return 20 * math.log10(peak) if peak > 1.0 else None


_ONE_GAIN = (f"it is given one gain, keeping the input's own sound's shape (a retake's, an animate's), and more would "
             f"lift its true peak past {TRUE_PEAK_CEILING:g} dBTP")
_LIMITED = (f"its peaks are limited to keep its true peak under {TRUE_PEAK_CEILING:g} dBTP, and louder it would be "
            f"flattened further")
_GATED = ("at so low a level BS.1770's -70 LUFS absolute gate leaves its quietest parts out of the measure, so what "
          "is measured is louder")


def _short(short: float, times: int, flag: str, reached: float, why: str, side: str = "short of") -> str:
    """The missed-target note for `times` files, the furthest `short` LU from their target (`flag`, reaching
    `reached` LUFS, when it is the only one) on `side` of it, and `why`."""
    what = (f"is brought to {reached:.1f} LUFS, {short:.1f} LU {side} {flag}" if times == 1
            else f"is up to {short:.1f} LU {side} its loudness target in {times} of the files written")
    return f"the sound {what}: {why}"


def _clamping(peak_db: float, times: int) -> str:
    """The clamping note for `times` clips the model made, the loudest peaking at `peak_db` dBFS."""
    where = "the clip made" if times == 1 else f"{times} of the clips made"
    return (f"the model's sound peaks at {'up to ' if times > 1 else ''}{peak_db:+.1f} dBFS as sampled and is clamped "
            f"at full scale in {where}, before delivery, as the paper's code does; sampling that clips each step "
            f"(clip_denoised: true, every sampling preset but paper) keeps it within full scale")


def _clipping(peak_db: float, times: int, why: str) -> str:
    """The clipping note for `times` files written, the loudest peaking at `peak_db` dBFS."""
    where = "the file written" if times == 1 else f"{times} of the files written"
    return (f"the sound peaks at {'up to ' if times > 1 else ''}{peak_db:+.1f} dBFS and is clipped at full scale in "
            f"{where}; {why}")
