"""The arithmetic of a video's frame timestamps (in ticks of its stream's clock): how far apart its frames come,
whether steadily and at what rate, and where a steady clip misses one. Nothing here reads a file: media.probe
reads the timestamps (demuxed, nothing decoded) and hands them over."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise


@dataclass(frozen=True)
class FrameGaps:
    """The shortest and longest time between one frame and the next on screen, in seconds, the stream's clock
    tick (a gap is only known to within one), the rate the frames come at when it is steady (steady_rate), and
    where a steady clip has frames missing (a phone's dropped frame: a gap of two frames, to within the clock's
    rounding): seconds from its first frame at which a frame was due. The shortest and longest gaps are those
    between frames that follow one another, not those over missing ones."""

    shortest: float
    longest: float
    tick: float
    rate: Fraction | None = None
    missing: tuple[float, ...] = ()

    @property
    def varies(self) -> bool:
        """A variable frame rate: the gaps differ by more than the rounding of timestamps to the clock."""
        return self.longest - self.shortest > 1.5 * self.tick


def gaps_of(times: list[int], tick: Fraction) -> FrameGaps | None:
    """The FrameGaps of frames shown at `times` (increasing, distinct, in ticks of `tick` seconds); None with fewer
    than two."""
    if len(times) < 2:
        return None
    rate = steady_rate(times, tick)
    gaps, missing = [b - a for a, b in pairwise(times)], []
    if rate:  # a rate of 0 (frames hours apart: a file's false claim) has no frames to miss
        period = 1 / (rate * tick)  # ticks a frame
        lapses = {g for g in gaps if round(g / period) >= 2 and abs(g - round(g / period) * period) <= 1.5}
        missing = [float((a - times[0]) * tick + k / rate) for a, b in pairwise(times) if b - a in lapses
                   for k in range(1, round((b - a) / period))]
        gaps = [g for g in gaps if g not in lapses] or gaps
    return FrameGaps(float(min(gaps) * tick), float(max(gaps) * tick), float(tick), rate, tuple(missing))


def steady_rate(times: list[int], tick: Fraction) -> Fraction | None:
    """The rate of frames shown at `times` (increasing, in ticks of `tick` seconds) when they come steadily, a
    frame now and then missing (a gap of two): the rational rate their gaps round to within the clock's precision —
    30 for a Matroska clip's 33 and 34 ms gaps, 30000/1001 for gaps of 1001 ticks of 1/30000 s. Each timestamp is
    rounded to the clock's precision — a tick, or as finely as one-frame gaps differ (a 1/16000 s clock holding
    times rounded to 1 ms: 16 ticks) — so the span from the first frame to the last, K frames long, is known to
    within that: of the rates in that window, a whole one, else an NTSC one (N·1000/1001), else the one of the
    smallest denominator. None with fewer than two frames, or when more than one gap in ten is not one frame (a
    variable rate: a phone's, frames 50 and 150 ms apart by turns)."""
    if len(times) < 2:
        return None
    gaps = [b - a for a, b in pairwise(times)]
    single = [g for g in gaps if g < 1.5 * min(gaps)]
    if len(single) < 0.9 * len(gaps):
        return None
    precision = math.gcd(*(g - min(single) for g in single)) or 1  # ticks
    period = Fraction(sum(single), len(single))  # ticks a frame, roughly
    frames = sum(max(1, round(g / period)) for g in gaps)
    span = times[-1] - times[0]
    centre, low = Fraction(frames) / (span * tick), Fraction(frames) / ((span + precision) * tick)
    high = Fraction(frames) / ((span - precision) * tick) if span > precision else centre * 2
    ntsc = Fraction(1000, 1001)
    candidates = [Fraction(round(centre)), round(centre / ntsc) * ntsc,
                  *(Fraction(round(centre * d), d) for d in range(2, 1002))]
    return next((rate for rate in candidates if rate > 0 and low <= rate <= high), centre.limit_denominator(1001))
