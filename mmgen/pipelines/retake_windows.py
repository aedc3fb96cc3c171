"""Regenerate chosen time ranges of one modality of a long clip, keeping everything else (the retake
algorithm, shared by audio and video — which modality is remade is data, as in windows.py).

The remade modality is a long batched tensor whose elements along its time axis are samples (audio) or frames
(video); `fixed` marks the elements whose value is final: everything outside the ranges, and each range's
part once a window has made it. Windows of one model clip are sampled in time order, each placed `context`
frames before the first element still to make, so the model sees what comes before (and, for a short range,
after) it. Each window is conditioned on the other modality everywhere (fully known) and on the remade
modality wherever it is fixed (a masked condition — replacement or gradient guidance, any sampler), and only
its unfixed elements change.

Seams: where a remade run meets a fixed neighbour, the new values are crossfaded linearly with the values
already there over `seam` elements, inside the run (so what is outside a range stays exactly as it was). A
long range is made by several windows; the last `seam` elements each window makes are handed to the next one
to remake and fade over, so no seam inside a range is a hard cut either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from mmgen.modal import Modal
from mmgen.pipelines.events import ProgressEvent, ProgressFn, quiet
from mmgen.pipelines.windows import SampleWindow, Track, cut

if TYPE_CHECKING:
    from mmgen.pipelines.preflight import TimeRange

SEAM_SECONDS = 0.02  # crossfade at each seam (audio: 20 ms; video: at least 2 frames)


def elements(r: TimeRange, per_second: float, start: float = 0.0) -> tuple[int, int]:
    """The samples or frames [a, b) a range touches (a frame shown for any part of it is remade), counted from the
    stream's first, at `start` seconds on the input's timeline (a at most 0 for a range from before it)."""
    return (math.floor((r.start - start) * per_second + 1e-6), math.ceil((r.end - start) * per_second - 1e-6))


def regenerate(
    sample_window: SampleWindow,
    given: Modal | Callable[[int], Modal],
    make: str,
    current: torch.Tensor,
    ranges: Sequence[tuple[int, int]],
    tracks: dict[str, Track],
    clip_frames: int,
    context: int,
    seam: int,
    progress: ProgressFn = quiet,
) -> tuple[torch.Tensor, int]:
    """`current` (batched, on the CPU) with elements [a, b) of each range remade; returns it and the number of
    windows sampled. `given` holds the other modality (batched, at least as long as `current` in frames), or gives
    its window from the window's first frame (held only where the windows are: `window_starts`)."""
    track = tracks[make]
    fixed = _fixed(current.shape[track.axis], ranges)
    if (clip_frames - context) * track.per_frame <= seam:
        raise ValueError("the window is too short for its context and seam")
    count = sum(1 for _ in _windows(fixed.clone(), track.per_frame, clip_frames, context, seam))
    work = current.clone()
    for done, (start, known_here) in enumerate(_windows(fixed, track.per_frame, clip_frames, context, seam)):
        progress(ProgressEvent("windows", done, count))
        begin, span = start * track.per_frame, known_here.shape[0]
        mask = torch.zeros(clip_frames * track.per_frame)
        mask[:span] = known_here.float()
        known = dict(given(start)) if callable(given) else {k: cut(v, tracks[k], start, clip_frames)
                                                             for k, v in given.items()}
        known[make] = cut(work, track, start, clip_frames)
        new = sample_window(known, {make: _along(mask, track.axis, work.dim())})[make]
        new = new.float().cpu().narrow(track.axis, 0, span)
        old = work.narrow(track.axis, begin, span)
        weight = _along(seam_weights(known_here, seam), track.axis, work.dim())
        old.copy_(old + weight * (new - old))
    progress(ProgressEvent("windows", count, count))
    return work, count


def window_starts(length: int, ranges: Sequence[tuple[int, int]], per_frame: int, clip_frames: int, context: int,
                  seam: int) -> list[int]:
    """The first frame of each window `regenerate` samples to remake `ranges` of a modality `length` elements long:
    the only frames of the other modality it is conditioned on are [start, start + clip_frames) of these."""
    if (clip_frames - context) * per_frame <= seam:
        raise ValueError("the window is too short for its context and seam")
    return [start for start, _ in _windows(_fixed(length, ranges), per_frame, clip_frames, context, seam)]


def _fixed(length: int, ranges: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Which of `length` elements are kept: all but those of `ranges`."""
    fixed = torch.ones(length, dtype=torch.bool)
    for a, b in ranges:
        fixed[max(0, a) : min(length, b)] = False
    return fixed


def _windows(
    fixed: torch.Tensor, per_frame: int, clip_frames: int, context: int, seam: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """The windows in sampling order: (first frame, which of its elements are known), marking what each
    makes as fixed in `fixed` (which it updates) — except a tail of `seam` elements the next window remakes."""
    length = fixed.shape[0]
    total_frames = math.ceil(length / per_frame)
    while not fixed.all():
        first = int((~fixed).nonzero()[0])
        start = min(max(0, first // per_frame - context), max(0, total_frames - clip_frames))
        begin = start * per_frame
        span = min(clip_frames * per_frame, length - begin)
        known_here = fixed[begin : begin + span].clone()
        yield start, known_here
        made = ~known_here
        fixed[begin : begin + span] |= made
        end = begin + span
        if end < length and not fixed[end]:  # the range goes on: the next window remakes and fades over the tail
            fixed[end - seam : end] &= ~made[span - seam :]


def seam_weights(known: torch.Tensor, seam: int) -> torch.Tensor:
    """Per element of a window: 0 where known, 1 where made, ramping linearly over `seam` elements inside each
    made run next to a known element (a run at the window's edge has no neighbour there and no ramp)."""
    weight = (~known).float()
    ramp = (torch.arange(seam, dtype=torch.float32) + 0.5) / seam  # 0 → 1
    edges = torch.diff(known.int(), prepend=known[:1].int(), append=known[-1:].int())
    for p in (edges == -1).nonzero().flatten().tolist():  # known → made at p
        n = min(seam, len(weight) - p)
        weight[p : p + n] *= ramp[:n]
    for q in (edges[1:] == 1).nonzero().flatten().tolist():  # made → known at q + 1
        n = min(seam, q + 1)
        weight[q + 1 - n : q + 1] *= ramp[:n].flip(0)
    return weight


def _along(values: torch.Tensor, axis: int, dims: int) -> torch.Tensor:
    """A 1-D tensor shaped to broadcast along `axis` of a `dims`-dimensional tensor."""
    shape = [1] * dims
    shape[axis] = values.shape[0]
    return values.reshape(shape)
