"""Still previews of a clip for people and reports: a contact sheet of its frames and a spectrogram of its sound,
as PNGs drawn with torch and encoded with PyAV's png encoder (atomic, like every mmgen output)."""

from __future__ import annotations

import math
import os

import av
import torch

from mmgen.files import atomic_output
from mmgen.media.encode import check_audio, check_video
from mmgen.media.tracks import to_uint8

GAP = 2  # pixels of dark grey between contact-sheet cells
GAP_LEVEL = 32
DYNAMIC_RANGE_DB = 80.0
MAX_COLUMNS = 2048  # spectrogram width cap: long audio gets a longer hop instead of a huge image
# "Inferno"-like colour ramp, dark (quiet) to bright (loud): anchors spaced evenly over [0, 1], RGB in [0, 1].
RAMP = torch.tensor(
    [
        [0.0, 0.0, 0.02],
        [0.26, 0.04, 0.41],
        [0.58, 0.15, 0.40],
        [0.87, 0.32, 0.23],
        [0.99, 0.65, 0.04],
        [0.99, 1.0, 0.64],
    ]
)


def contact_sheet_png(
    path: str | os.PathLike, video: torch.Tensor, columns: int = 8, *, overwrite: bool = False
) -> None:
    """All frames of video (T, 3, H, W) in [-1, 1], left to right then top to bottom, `columns` per row."""
    check_video(video)
    frames = to_uint8(video)  # (T, H, W, 3)
    count, h, w, _ = frames.shape
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    sheet = torch.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), GAP_LEVEL, dtype=torch.uint8)
    for k, frame in enumerate(frames):
        top, left = (k // columns) * (h + GAP), (k % columns) * (w + GAP)
        sheet[top : top + h, left : left + w] = frame
    write_png(path, sheet, overwrite=overwrite)


def spectrogram_png(
    path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, *, overwrite: bool = False
) -> None:
    """Log-magnitude spectrogram of audio (1, L): time left to right, frequency 0..sample_rate/2 bottom to top,
    the loudest bin brightest and everything DYNAMIC_RANGE_DB below it black. ~32 ms Hann windows."""
    check_audio(audio)
    samples = audio.detach().float().reshape(-1)
    n_fft = 2 ** max(6, round(math.log2(0.032 * sample_rate)))
    hop = max(n_fft // 4, math.ceil(samples.numel() / MAX_COLUMNS))
    if samples.numel() < n_fft:
        samples = torch.nn.functional.pad(samples, (0, n_fft - samples.numel()))
    spectrum = torch.stft(
        samples, n_fft, hop, window=torch.hann_window(n_fft), center=False, return_complex=True
    )
    decibels = 20 * torch.log10(spectrum.abs() + 1e-8)  # (n_fft/2 + 1, columns)
    level = ((decibels - decibels.max()) / DYNAMIC_RANGE_DB + 1).clamp(0, 1)
    level = level.flip(0)  # low frequencies at the bottom
    write_png(path, (colour(level) * 255).round().to(torch.uint8), overwrite=overwrite)


def colour(level: torch.Tensor) -> torch.Tensor:
    """Map levels in [0, 1] of any shape to RGB in [0, 1] (shape + (3,)) by linear interpolation along RAMP."""
    position = level.clamp(0, 1) * (len(RAMP) - 1)
    low = position.floor().long().clamp(max=len(RAMP) - 2)
    weight = (position - low)[..., None]
    return RAMP[low] * (1 - weight) + RAMP[low + 1] * weight


def write_png(path: str | os.PathLike, image: torch.Tensor, *, overwrite: bool = False) -> None:
    """Write an (H, W, 3) uint8 image as PNG. The png encoder's one packet is the whole file."""
    height, width, _ = image.shape
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "rgb24"
    frame = av.VideoFrame.from_ndarray(image.contiguous().numpy(), format="rgb24")
    data = b"".join(bytes(packet) for packet in [*encoder.encode(frame), *encoder.encode(None)])
    with atomic_output(path, overwrite) as temp:
        temp.write_bytes(data)
