"""Measure generated clips of the flash-and-tone world: audio bursts, disc analysis, and the scores built on them.

Scores (DESIGN §9 and the demo-model issue):
- video-to-audio: event F1 between detected bursts and the true event frames, and pitch accuracy (share of
  bursts whose pitch is the disc colour's), each next to its chance level: the same audio scored against the
  wrong clips (the batch rolled by one), which keeps whatever the audio does regardless of the video.
- unconditional: share of well-formed clips (exactly one disc, 1-3 flash frames), F1 between the video's
  flash frames and the audio's bursts, and the share of bursts whose pitch matches the disc's colour.
F1 is pooled over a batch (true/false positives and misses summed over clips), so clips with fewer events
do not weigh more. Everything works on tensors, so it scores model outputs and decoded mp4s alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import torch
import torch.nn.functional as F

from mmgen.data.synthetic import BACKGROUND, COLOURS, PITCH_HZ, frame_start_sample

# Burst detection, on the RMS of each video frame's audio window. A ground-truth burst has a window RMS of
# about 0.17; silence is 0. The rise test keeps a burst's decaying tail in the next window from counting; the
# first window, with nothing before it, is compared with the clip's median window (silence, in this world).
RMS_FLOOR = 0.02  # below this a window is silent, whatever the rest of the clip does
RMS_SHARE_OF_MAX = 0.25  # ... and it must reach this share of the clip's loudest window
RMS_RISE = 2.0  # ... and be this many times louder than the window before it
MIN_PITCH_HZ = 50.0  # spectral peaks below this are hum/DC, not a burst

# Disc analysis, on a 0..1 scale. The dim disc differs from the background by 0.495 in its strongest channel;
# a flash frame has ~3.4x the dim frames' total excess brightness (1.9x the area, 1.8x the contrast).
FOREGROUND_DELTA = 0.2  # a pixel this far from the background (in any channel) is part of a disc
MIN_DISC_AREA = 0.02  # of the frame; the dim disc covers ~0.08
FLASH_RATIO = 1.8  # a frame flashes when its excess brightness is this many times the clip's median frame's
FLASH_FLOOR = 0.01  # ... and at least this much (in frame areas at full contrast), so blank clips never flash


class Truth(Protocol):
    """What scoring needs to know about a clip: a `Clip`, or a `Label` read back from labels.jsonl."""

    @property
    def colour(self) -> str: ...

    @property
    def event_frames(self) -> list[int]: ...


@dataclass(frozen=True)
class Burst:
    """A detected sound event: the video frame it starts in, its dominant frequency and its window RMS."""

    frame: int
    freq_hz: float
    rms: float


@dataclass(frozen=True)
class VideoAnalysis:
    discs: int  # the most common number of disc-sized bright regions over the frames
    colour: str | None  # the disc colour nearest to the foreground's mean colour; None with no foreground
    flash_frames: list[int]


@dataclass(frozen=True)
class EventCounts:
    """Frame-exact matches between predicted and true event frames; add them up over a batch."""

    hits: int = 0
    false_alarms: int = 0
    misses: int = 0

    @classmethod
    def of(cls, predicted: Sequence[int], true: Sequence[int]) -> EventCounts:
        p, t = set(predicted), set(true)
        return cls(len(p & t), len(p - t), len(t - p))

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(
            self.hits + other.hits, self.false_alarms + other.false_alarms, self.misses + other.misses
        )

    @property
    def f1(self) -> float:
        """2·hits / (2·hits + false alarms + misses); 1.0 when there was nothing to find and nothing was claimed."""
        denominator = 2 * self.hits + self.false_alarms + self.misses
        return 1.0 if denominator == 0 else 2 * self.hits / denominator


def event_f1(predicted_frames: Sequence[int], true_frames: Sequence[int]) -> float:
    """F1 of predicted vs true event frames, a hit being the same frame index.

    Both empty gives 1.0 (nothing to find, nothing claimed); exactly one of them empty gives 0.0.
    """
    return EventCounts.of(predicted_frames, true_frames).f1


def nearest_colour(freq_hz: float, pitch_hz: Mapping[str, float] = PITCH_HZ) -> str:
    """The colour whose pitch (in the world `pitch_hz` describes) is nearest to `freq_hz` in log frequency
    (musical distance, not Hz)."""
    return min(pitch_hz, key=lambda c: abs(math.log(freq_hz / pitch_hz[c])))


def pitch_accuracy(bursts: Sequence[Burst], colour: str | None, pitch_hz: Mapping[str, float] = PITCH_HZ) -> float:
    """Share of `bursts` whose pitch is `colour`'s. No bursts scores 0.0: silence never has the right pitch."""
    return _pitch_hits(bursts, colour, pitch_hz) / len(bursts) if bursts else 0.0


def _pitch_hits(bursts: Sequence[Burst], colour: str | None, pitch_hz: Mapping[str, float]) -> int:
    return sum(nearest_colour(b.freq_hz, pitch_hz) == colour for b in bursts)


def detect_bursts(audio: torch.Tensor, sample_rate: int, fps: float, frames: int) -> list[Burst]:
    """Frame-level onsets in `audio` (1, L): the video frames whose audio window starts a loud sound.

    A window is an onset when its RMS is above RMS_FLOOR, at least RMS_SHARE_OF_MAX of the loudest window's,
    and RMS_RISE times the previous window's (for the first window: the median window's, so audio that is loud
    from the start is not an onset). Its frequency is the peak of the Hann-windowed, zero-padded
    spectrum of that window.
    """
    signal = audio.detach().to("cpu", torch.float64).mean(dim=0)  # (L,)
    bounds = [min(frame_start_sample(f, sample_rate, fps), len(signal)) for f in range(frames + 1)]
    windows = [signal[a:b] for a, b in pairwise(bounds)]
    rms = [float(w.square().mean().sqrt()) if len(w) else 0.0 for w in windows]
    threshold = max(RMS_FLOOR, RMS_SHARE_OF_MAX * max(rms, default=0.0))
    before = [float(torch.tensor(rms).median())] + rms[:-1]
    bursts = []
    for f, (level, previous) in enumerate(zip(rms, before, strict=True)):
        if level >= threshold and level > RMS_RISE * previous:
            bursts.append(Burst(f, _dominant_frequency(windows[f], sample_rate), level))
    return bursts


def _dominant_frequency(segment: torch.Tensor, sample_rate: int) -> float:
    segment = (segment - segment.mean()) * torch.hann_window(
        len(segment), periodic=False, dtype=segment.dtype
    )
    n_fft = 4 * 2 ** math.ceil(math.log2(len(segment)))  # zero-padding: a bin is < sample_rate / (4 * len)
    magnitude = torch.fft.rfft(segment, n=n_fft).abs()
    freqs = torch.fft.rfftfreq(n_fft, d=1 / sample_rate, dtype=segment.dtype)
    magnitude[freqs < MIN_PITCH_HZ] = 0
    return float(freqs[magnitude.argmax()])


def analyse_video(video: torch.Tensor) -> VideoAnalysis:
    """Discs, their colour and the flash frames of one clip `video` (F, 3, H, W) in [-1, 1]."""
    pixels = (video.detach().to("cpu", torch.float32) + 1) / 2  # (F, 3, H, W) in [0, 1]
    frames, _, height, width = pixels.shape
    background = pixels.permute(1, 0, 2, 3).reshape(3, -1).median(dim=1).values  # (3,)
    offset = pixels - background[None, :, None, None]  # (F, 3, H, W)
    excess = offset.abs().amax(dim=1)  # (F, H, W): distance from the background in the strongest channel
    foreground = excess > FOREGROUND_DELTA

    counts = _count_regions(foreground, min_area=MIN_DISC_AREA * height * width)
    discs = int(torch.tensor(counts).mode().values)

    brightness = excess.sum(dim=(1, 2))  # (F,)
    floor = max(FLASH_FLOOR * height * width, FLASH_RATIO * float(brightness.median()))
    flash_frames = [f for f in range(frames) if float(brightness[f]) > floor]

    colour = None
    if foreground.any():
        mean_offset = offset.permute(1, 0, 2, 3)[:, foreground].mean(dim=1)  # (3,)
        colour = max(COLOURS, key=lambda c: _cosine(mean_offset, torch.tensor(COLOURS[c]) - BACKGROUND))
    return VideoAnalysis(discs=discs, colour=colour, flash_frames=flash_frames)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


def _count_regions(mask: torch.Tensor, min_area: float) -> list[int]:
    """Number of 8-connected regions of at least `min_area` pixels in each frame of `mask` (F, H, W).

    Labels spread by 3x3 max-pooling restricted to the mask until nothing changes: each region ends up
    carrying the largest initial label among its pixels, all frames at once.
    """
    frames = mask.shape[0]
    inside = mask.to(torch.float64)
    labels = torch.arange(1, mask.numel() + 1, dtype=torch.float64).reshape(mask.shape) * inside  # (F, H, W)
    while True:
        spread = F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0] * inside
        if torch.equal(spread, labels):
            break
        labels = spread
    counts = []
    for f in range(frames):
        _, areas = labels[f][labels[f] > 0].unique(return_counts=True)
        counts.append(int((areas >= min_area).sum()))
    return counts


def score_video_to_audio(
    generated_audio: torch.Tensor | Sequence[torch.Tensor],
    clips: Sequence[Truth],
    *,
    sample_rate: int,
    fps: float,
    pitch_hz: Mapping[str, float] = PITCH_HZ,
) -> dict[str, float | int | None]:
    """Event F1 and pitch accuracy of audio generated for `clips`' videos, and their chance levels.

    `generated_audio`: (B, 1, L) or B tensors (1, L), one per clip. Chance scores the same audio against the
    clips rolled by one (None for a single clip). `pitch_hz`: the clips' world's colour → pitch mapping.
    """
    _check_batch(generated_audio, clips)
    frames = round(generated_audio[0].shape[-1] * fps / sample_rate)
    bursts = [detect_bursts(a, sample_rate, fps, frames) for a in generated_audio]
    colours = [c.colour for c in clips]
    events = [c.event_frames for c in clips]
    f1, pitch = _pooled(bursts, colours, events, pitch_hz)
    chance_f1, chance_pitch = (
        _pooled(bursts, _roll(colours), _roll(events), pitch_hz) if len(clips) > 1 else (None, None)
    )
    return {
        "f1": f1,
        "pitch_accuracy": pitch,
        "chance_f1": chance_f1,
        "chance_pitch_accuracy": chance_pitch,
        "n": len(clips),
    }


def score_unconditional(
    video: torch.Tensor | Sequence[torch.Tensor],
    audio: torch.Tensor | Sequence[torch.Tensor],
    *,
    sample_rate: int,
    fps: float,
) -> dict[str, float | int | None]:
    """How well jointly generated clips obey the world, with no truth but the clips themselves.

    well_formed: share of clips with exactly one disc and 1-3 flash frames. flash_burst_f1: pooled F1 between
    each clip's flash frames and its audio bursts. colour_pitch: share of all bursts whose pitch is the colour
    of their clip's disc. Chance levels pair each video with the next clip's audio.
    `video`: (B, F, 3, H, W) in [-1, 1]; `audio`: (B, 1, L).
    """
    _check_batch(audio, video)
    analyses = [analyse_video(v) for v in video]
    frames = video[0].shape[0]
    bursts = [detect_bursts(a, sample_rate, fps, frames) for a in audio]
    colours = [a.colour for a in analyses]
    flashes = [a.flash_frames for a in analyses]
    f1, pitch = _pooled(bursts, colours, flashes, PITCH_HZ)
    chance_f1, chance_pitch = (
        _pooled(_roll(bursts), colours, flashes, PITCH_HZ) if len(analyses) > 1 else (None, None)
    )
    well_formed = sum(a.discs == 1 and 1 <= len(a.flash_frames) <= 3 for a in analyses) / len(analyses)
    return {
        "well_formed": well_formed,
        "flash_burst_f1": f1,
        "colour_pitch": pitch,
        "chance_flash_burst_f1": chance_f1,
        "chance_colour_pitch": chance_pitch,
        "n": len(analyses),
    }


def _pooled(
    bursts: Sequence[Sequence[Burst]],
    colours: Sequence[str | None],
    events: Sequence[Sequence[int]],
    pitch_hz: Mapping[str, float],
) -> tuple[float, float]:
    """(event F1, pitch accuracy) pooled over clips; pitch accuracy is 0.0 when no clip has a burst."""
    counts, hits, total = EventCounts(), 0, 0
    for found, colour, true in zip(bursts, colours, events, strict=True):
        counts += EventCounts.of([b.frame for b in found], true)
        hits += _pitch_hits(found, colour, pitch_hz)
        total += len(found)
    return counts.f1, (hits / total if total else 0.0)


def _roll(items: Sequence) -> list:
    """Clip i gets clip i+1's item: a mismatched pairing in which nothing is paired with itself."""
    return list(items[1:]) + list(items[:1])


def _check_batch(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"need matching, non-empty batches, got {len(a)} and {len(b)}")
