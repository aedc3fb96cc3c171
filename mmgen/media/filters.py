"""Run audio (1 to 8 channels) through an FFmpeg filter chain (PyAV's filter graph): the resampler, the limiter and
the EBU R128 meter mmgen uses are FFmpeg's own, kept and tested upstream, not re-written here."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import av.filter
import numpy as np

from mmgen.media.frame_arrays import frame_array

CHUNK = 4096  # samples per frame pushed into the graph


def filter_audio(
    samples: np.ndarray,
    sample_rate: int,
    chain: Sequence[tuple[str, str]],
    out: np.ndarray | None = None,
    channels: int = 1,
) -> np.ndarray:
    """Float samples of `channels` channels (1 to 8: mono (L,), or interleaved (L·C,)) at `sample_rate` through
    `chain` of (filter, arguments), filtered together (a linked limiter), ending as float 32-bit in as many
    channels, interleaved as they came. Returns every sample the chain gave (not the frames' metadata, which no
    caller reads).

    Given `out` (float32, 1-D), the samples go into it instead, frame by frame, cut at its length, silence where
    the chain gave fewer, and `out` is returned: no list of frames and no joined copy. `out` may be `samples`
    itself (filtered in place) for a chain that gives no sample before the one at its place has been pushed (the
    limiter, delay-compensated); one that ran ahead would overwrite what it has yet to read, and stops here."""
    layout = "mono" if channels == 1 else f"{channels}c"  # channels of no particular order: a filter's the same
    graph = av.filter.Graph()
    node = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout=layout, time_base=Fraction(1, sample_rate))
    for name, args in (*chain, ("aformat", f"sample_fmts=flt:channel_layouts={layout}")):
        step = graph.add(name, args)
        node.link_to(step)
        node = step
    sink = graph.add("abuffersink")
    node.link_to(sink)
    graph.configure()
    flat = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    in_place = out is not None and np.may_share_memory(out, flat)
    pieces: list[np.ndarray] = []
    pushed = written = 0

    def drain() -> None:
        nonlocal written
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            piece = frame_array(frame).T.reshape(-1)  # interleaved
            if out is None:
                pieces.append(piece)
                continue
            piece = piece[: len(out) - written]
            if in_place and written + len(piece) > pushed:
                raise RuntimeError(f"{chain} gave samples ahead of its input: it cannot filter in place")
            out[written : written + len(piece)] = piece
            written += len(piece)

    for start in range(0, len(flat), CHUNK * channels):
        frame = av.AudioFrame.from_ndarray(flat[None, start : start + CHUNK * channels], format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start // channels, Fraction(1, sample_rate)
        graph.push(frame)
        pushed = start + frame.samples * channels
        drain()
    graph.push(None)
    drain()
    if out is not None:
        out[written:] = 0.0
        return out
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
