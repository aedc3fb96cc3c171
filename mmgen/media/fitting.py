"""Fit decoded pictures to the model's frame size inside FFmpeg, so a full-size picture never becomes a Python or
torch array: only model-size frames cross into Python, whatever the source's resolution (a 4K phone clip costs
the same Python memory per frame as a 64×64 one).

The picture is fitted to the target aspect as it is shown — its pixels' aspect ratio (anamorphic DV, DVD, HDV)
and display rotation applied — by `fit`: "crop" takes the centre, "pad" letterboxes with
black as the official training data was prepared (bars centred, the extra pixel of an odd margin at the
bottom/right). FFmpeg's crop filter cuts the stored picture, and swscale resizes it and converts it to RGB in
one pass: bicubic with B=0, C=0.5 (Keys' cubic with a = -0.5, the kernel of PIL and of torch's antialiased
bicubic), widened when shrinking so it antialiases, with full chroma interpolation and accurate rounding. The
small picture is then turned upright (display rotation) and padded. Frames come out as uint8 RGB.

Against the exact source pixels of test patterns (H.264 4:2:0, resized by torch), this is off by 0.7-1.6 levels
of 255 on average where converting the full picture to RGB and resizing it with torch was off by 1.1-2.1; the two
differ by about 1 level, at most a few on chroma edges (swscale interpolates the subsampled chroma itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

import av
import av.filter
import torch
import torch.nn.functional as F

from mmgen.media.frame_arrays import frame_array
from mmgen.media.probe import display_rotation

FITS = ("crop", "pad")
SCALE_FLAGS = "flags=bicubic+accurate_rnd+full_chroma_int:param0=0:param1=0.5"


@dataclass(frozen=True)
class Fitting:
    """What FFmpeg does to a stored picture: crop box (x, y, width, height), then scale to (height, width), both
    in the stored picture's orientation (before it is turned upright and padded)."""

    crop: tuple[int, int, int, int]
    scaled: tuple[int, int]


def plan_fitting(
    stored: tuple[int, int], rotation: int, size: tuple[int, int], fit: str, pixel_aspect: Fraction = Fraction(1)
) -> Fitting:
    """The Fitting of a stored (height, width) picture, whose pixels are shown `pixel_aspect` times as wide as
    tall and which is shown turned by `rotation`, into `size` = (H, W) of square pixels."""
    h, w = stored
    shown_w = w * pixel_aspect  # the stored picture's width as shown, in units of its rows
    height, width = size[::-1] if rotation % 180 else size  # the target, seen in the stored orientation
    x, y, keep_w, keep_h = 0, 0, w, h
    if fit == "crop":
        if shown_w * height > h * width:  # too wide: keep the middle columns
            keep_w = max(1, min(w, round(h * width / height / pixel_aspect)))
            x = (w - keep_w) // 2
        else:
            keep_h = max(1, min(h, round(shown_w * height / width)))
            y = (h - keep_h) // 2
        scaled = (height, width)
    else:
        scale = min(height / h, width / shown_w)
        scaled = (max(1, min(height, round(h * scale))), max(1, min(width, round(shown_w * scale))))
    return Fitting((x, y, keep_w, keep_h), scaled)


class FrameFitter:
    """Decoded frames → model frames (3, H, W) uint8 at `size` = (H, W), from a stream whose pixels are shown
    `pixel_aspect` times as wide as tall (media.probe.pixel_aspect). Keeps one filter graph, rebuilt if the
    stream changes its picture size, format or rotation mid-way."""

    def __init__(self, size: tuple[int, int], fit: str = "crop", pixel_aspect: Fraction = Fraction(1)):
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
        self.size, self.fit, self.pixel_aspect = size, fit, pixel_aspect
        self._key: tuple | None = None
        self._graph: av.filter.Graph | None = None

    def __call__(self, frame: av.VideoFrame) -> torch.Tensor:
        rotation = display_rotation(frame.rotation)
        key = (frame.width, frame.height, frame.format.name, rotation)
        if key != self._key:
            fitting = plan_fitting((frame.height, frame.width), rotation, self.size, self.fit, self.pixel_aspect)
            self._graph, self._key = _graph(frame, fitting), key
        self._graph.push(frame)
        image = torch.from_numpy(frame_array(self._graph.pull(), "rgb24")).permute(2, 0, 1)  # (3, h, w)
        return _pad(rotate_upright(image, rotation), self.size).contiguous()  # its own memory, not FFmpeg's frame


def rotate_upright(image: torch.Tensor, rotation: int) -> torch.Tensor:
    """Turn a (..., H, W) image by `rotation` degrees counter-clockwise (0/90/180/270), as a player would."""
    return torch.rot90(image, k=rotation // 90, dims=(-2, -1))


def _graph(frame: av.VideoFrame, fitting: Fitting) -> av.filter.Graph:
    """buffer → crop (only if needed) → scale to `fitting.scaled` in RGB → buffersink."""
    graph = av.filter.Graph()
    x, y, keep_w, keep_h = fitting.crop
    steps = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                              time_base=frame.time_base or Fraction(1, 1000))]
    if (keep_w, keep_h) != (frame.width, frame.height):
        steps.append(graph.add("crop", f"w={keep_w}:h={keep_h}:x={x}:y={y}:exact=1"))
    height, width = fitting.scaled
    steps += [graph.add("scale", f"w={width}:h={height}:{SCALE_FLAGS}"), graph.add("format", "rgb24")]
    steps.append(graph.add("buffersink"))
    for a, b in pairwise(steps):
        a.link_to(b)
    graph.configure()
    return graph


def _pad(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Letterbox a (3, h, w) uint8 image to `size` with black, centred, the odd pixel at the bottom/right."""
    (height, width), (h, w) = size, image.shape[-2:]
    if (h, w) == (height, width):
        return image
    top, left = (height - h) // 2, (width - w) // 2
    return F.pad(image, (left, width - w - left, top, height - h - top), value=0)
