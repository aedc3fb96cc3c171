"""An independent loudness meter for tests: FFmpeg's EBU R128 filter (ebur128, true peak on), driven through
PyAV's filter graph — not the pyloudnorm meter mmgen normalises with."""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter
import numpy as np


def ebur128(samples: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(integrated loudness in LUFS, true peak in dBTP) of mono float samples."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono",
                               time_base=Fraction(1, sample_rate))
    meter = graph.add("ebur128", "metadata=1:peak=true")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    last: dict[str, str] = {}

    def drain() -> None:
        nonlocal last
        while True:
            try:
                last = dict(graph.pull().metadata) or last
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    flat = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
    for start in range(0, flat.shape[1], 1000):
        frame = av.AudioFrame.from_ndarray(flat[:, start : start + 1000], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    peak = float(last["lavfi.r128.true_peak"])
    return float(last["lavfi.r128.I"]), 20 * np.log10(peak) if peak > 0 else -np.inf
