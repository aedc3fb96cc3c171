"""Any-length conditional generation: make one modality for a long input of the other, one model-length
window at a time (shared by soundtrack and animate — which modality is the input is data, not a branch).

Window k covers frames [k·hop, k·hop + F) of the input at the model's frame rate, hop = F − overlap.
Window 0 is conditioned on the input alone; every later window also on the END of what the previous
windows made, placed over its first `overlap` frames (a masked condition), so the output continues
across the seam. The overlap is then crossfaded LINEARLY: the two sides are conditioned to agree there,
so they are strongly correlated and a linear fade keeps the level (an equal-power fade would swell
correlated material by up to 3 dB in the middle). The last window is padded past the input's end
(video: the last frame repeated; audio: silence); the caller trims the result to the input's duration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmgen.errors import UsageError
from mmgen.modal import Modal
from mmgen.pipelines.events import ProgressEvent, ProgressFn, quiet


@dataclass(frozen=True)
class Track:
    """How a modality's batched tensor runs in time."""

    axis: int  # the time axis: video (B, F, C, H, W) → 1, audio (B, 1, L) → 2
    per_frame: int  # elements along `axis` per video frame: video 1, audio sample_rate / fps
    pad: str  # "replicate" (repeat the last frame) or "constant" (zeros = silence)


def tracks_for(clip_frames: int, clip_samples: int) -> dict[str, Track]:
    """The time layout of a model clip of `clip_frames` frames and `clip_samples` audio samples."""
    if clip_samples % clip_frames:
        raise UsageError(f"the model's audio length {clip_samples} is not a whole number of samples per frame "
                         f"({clip_frames} frames): windows cannot line up")
    return {"video": Track(1, 1, "replicate"), "audio": Track(2, clip_samples // clip_frames, "constant")}


@dataclass(frozen=True)
class Window:
    start: int  # first frame of the window in the long signal (model frame rate)
    overlap: int  # frames shared with the previous window (0 for the first)


def plan_windows(total_frames: int, clip_frames: int, overlap: float) -> list[Window]:
    """Windows of `clip_frames` covering `total_frames`, each sharing round(overlap·F) frames with the last.
    Any overlap in [0, 1) tiles; the user's limit is the tighter one in settings.LIMITS."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"windows cannot tile with overlap {overlap}: it must be in [0, 1)")
    shared = min(round(overlap * clip_frames), clip_frames - 1)
    hop = clip_frames - shared
    count = 1 + max(0, math.ceil((total_frames - clip_frames) / hop))
    return [Window(start=k * hop, overlap=shared if k else 0) for k in range(count)]


def cut(x: torch.Tensor, track: Track, start: int, frames: int) -> torch.Tensor:
    """Frames [start, start + frames) of a long batched signal, padded past its end per `track.pad`."""
    begin, end = start * track.per_frame, (start + frames) * track.per_frame
    piece = x.narrow(track.axis, begin, max(0, min(end, x.shape[track.axis]) - begin))
    missing = end - begin - piece.shape[track.axis]
    if missing == 0:
        return piece
    if piece.shape[track.axis] == 0:
        raise ValueError("cannot pad a window that starts past the end of the signal")
    # F.pad pads the LAST dims: move the time axis last, pad, move it back.
    moved = piece.movedim(track.axis, -1)
    flat = moved.reshape(-1, 1, moved.shape[-1])  # (N, 1, T): "replicate" needs a channel dim
    padded = F.pad(flat, (0, missing), mode=track.pad)
    return padded.reshape(*moved.shape[:-1], -1).movedim(-1, track.axis)


def crossfade_into(out: torch.Tensor, new: torch.Tensor, track: Track, start: int, overlap: int) -> None:
    """Write window `new` into `out` (the whole output, holding everything up to the previous window) at
    `start`, in place: a linear fade from what is there to `new` over the first `overlap` frames, then `new`
    alone. In place, so stitching N windows copies each once (re-concatenating the output grew as N²)."""
    fade = overlap * track.per_frame
    target = out.narrow(track.axis, start * track.per_frame, new.shape[track.axis])
    if fade:
        shape = [1] * new.dim()
        shape[track.axis] = fade
        weight = ((torch.arange(fade, dtype=new.dtype) + 0.5) / fade).reshape(shape)  # 0 → 1 across the overlap
        old = target.narrow(track.axis, 0, fade)
        old.add_(weight * (new.narrow(track.axis, 0, fade) - old))
    rest = new.shape[track.axis] - fade
    target.narrow(track.axis, fade, rest).copy_(new.narrow(track.axis, fade, rest))


def stretched(shape: torch.Size, track: Track, frames: int) -> list[int]:
    """`shape` with its time axis `frames` long."""
    longer = list(shape)
    longer[track.axis] = frames * track.per_frame
    return longer


def overlap_mask(like: torch.Tensor, track: Track, overlap: int) -> torch.Tensor:
    """1 over the first `overlap` frames of a window, 0 after: broadcastable to `like` along the time axis."""
    shape = [1] * like.dim()
    shape[track.axis] = like.shape[track.axis]
    mask = torch.zeros(shape, dtype=like.dtype)
    mask.narrow(track.axis, 0, overlap * track.per_frame).fill_(1.0)
    return mask


# (known values per modality for one window, masks for the partly known ones) → the window's sample
SampleWindow = Callable[[Modal, Modal], Modal]


def generate_continuous(
    sample_window: SampleWindow,
    source: Modal,
    make: str,
    tracks: dict[str, Track],
    clip_frames: int,
    total_frames: int,
    overlap: float,
    progress: ProgressFn = quiet,
) -> torch.Tensor:
    """Make modality `make` for the long batched input `source` (one key, the other modality), window by
    window. Returns `make` covering the windows' frames (≥ total_frames; the caller trims). Each window's
    sample is moved to the CPU and stitched there, into one tensor allocated once."""
    (given,) = source
    plan = plan_windows(total_frames, clip_frames, overlap)
    out: torch.Tensor | None = None  # allocated at the first window's shape, as long as all windows
    for k, window in enumerate(plan):
        progress(ProgressEvent("windows", k, len(plan)))
        known = {given: cut(source[given], tracks[given], window.start, clip_frames)}
        masks: Modal = {}
        if window.overlap:
            previous = cut(out, tracks[make], window.start, window.overlap)
            known[make] = _place(previous, tracks[make], clip_frames)
            masks[make] = overlap_mask(known[make], tracks[make], window.overlap)
        new = sample_window(known, masks)[make].float().cpu()
        if out is None:
            out = new.new_empty(stretched(new.shape, tracks[make], plan[-1].start + clip_frames))
        crossfade_into(out, new, tracks[make], window.start, window.overlap)
    progress(ProgressEvent("windows", len(plan), len(plan)))
    return out


def _place(head: torch.Tensor, track: Track, clip_frames: int) -> torch.Tensor:
    """A window-long tensor holding `head` at its start and zeros after (the masked-out part)."""
    missing = clip_frames * track.per_frame - head.shape[track.axis]
    shape = list(head.shape)
    shape[track.axis] = missing
    return torch.cat([head, head.new_zeros(shape)], dim=track.axis)
