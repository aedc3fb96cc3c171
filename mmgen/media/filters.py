"""Run mono audio through an FFmpeg filter chain (PyAV's filter graph): the resampler, the limiter and the
EBU R128 meter mmgen uses are FFmpeg's own, kept and tested upstream, not re-written here."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import av.filter
import numpy as np

CHUNK = 4096  # samples per frame pushed into the graph


def filter_audio(
    samples: np.ndarray, sample_rate: int, chain: Sequence[tuple[str, str]]
) -> tuple[np.ndarray, dict[str, str]]:
    """Mono float samples (L,) at `sample_rate` through `chain` of (filter, arguments), ending as mono float
    32-bit. Returns every sample the chain gave, and the metadata of its last frame (e.g. ebur128's)."""
    graph = av.filter.Graph()
    node = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono", time_base=Fraction(1, sample_rate))
    for name, args in (*chain, ("aformat", "sample_fmts=flt:channel_layouts=mono")):
        step = graph.add(name, args)
        node.link_to(step)
        node = step
    sink = graph.add("abuffersink")
    node.link_to(sink)
    graph.configure()
    out: list[np.ndarray] = []
    metadata: dict[str, str] = {}

    def drain() -> None:
        nonlocal metadata
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            out.append(frame.to_ndarray().reshape(-1))
            metadata = dict(frame.metadata)

    flat = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    for start in range(0, len(flat), CHUNK):
        frame = av.AudioFrame.from_ndarray(flat[None, start : start + CHUNK], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return (np.concatenate(out) if out else np.zeros(0, np.float32)), metadata
