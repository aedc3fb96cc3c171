"""Frames as numpy arrays and back: the one way mmgen reads a decoded frame's samples or pixels.

PyAV 18 finds a planar audio frame's planes by walking FFmpeg's data pointers until it meets a null one; a 7.1
frame sets all eight, so the walk reads on past them into the frame's line sizes and crashes the process
(segfault) in AudioFrame.planes, to_ndarray and from_ndarray. Decoders give planar frames (AAC, Opus, Vorbis,
Matroska's PCM …): each channel's plane is opened here by its index instead. Pixels are PyAV's own to_ndarray.
"""

from __future__ import annotations

import av
import numpy as np
from av.audio.frame import format_dtypes
from av.audio.plane import AudioPlane


def frame_array(frame: av.AudioFrame | av.VideoFrame, format: str | None = None) -> np.ndarray:
    """A sound frame's samples as (channels, n) rows, planar or packed, in its own sample type; a picture frame's
    pixels as (h, w, …) in `format` (rgb24, rgba …). Arrays of their own, not the frame's memory."""
    if isinstance(frame, av.VideoFrame):
        return frame.to_ndarray(format=format)
    channels, n, dtype = len(frame.layout.channels), frame.samples, _dtype(frame)
    if frame.format.is_packed:  # one plane, interleaved: (n, channels) seen as rows
        return np.frombuffer(AudioPlane(frame, 0), dtype, count=n * channels).reshape(n, channels).T.copy(order="F")
    return np.stack([np.frombuffer(AudioPlane(frame, i), dtype, count=n) for i in range(channels)])


def audio_frame(rows: np.ndarray, like: av.AudioFrame) -> av.AudioFrame:
    """(channels, n) `rows` as a frame of `like`'s sample format, layout and rate (frame_array's inverse)."""
    frame = av.AudioFrame(format=like.format.name, layout=like.layout, samples=rows.shape[1])
    frame.sample_rate = like.sample_rate
    planes = [rows.T] if like.format.is_packed else list(rows)  # interleaved in one plane, or one plane a channel
    for index, plane in enumerate(planes):
        written = np.frombuffer(AudioPlane(frame, index), _dtype(frame), count=plane.size)
        np.copyto(written, plane.reshape(-1), casting="no")
    return frame


def _dtype(frame: av.AudioFrame) -> np.dtype:
    try:
        return np.dtype(format_dtypes[frame.format.name])
    except KeyError:
        raise ValueError(f"sound in {frame.format.name!r} samples cannot be read as an array") from None
