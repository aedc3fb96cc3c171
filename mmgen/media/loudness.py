"""Loudness normalisation to an integrated-loudness target (ITU-R BS.1770-4 / EBU R128), e.g. −16 LUFS, under a
true-peak ceiling (−1 dBTP), never clipping.

Measuring is pyloudnorm's BS.1770 meter (K-weighting, 400 ms blocks, absolute and relative gates); true peak is
the BS.1770-4 Annex 2 method (4× polyphase oversampling, scipy). Sound whose peaks would pass the ceiling at the
target gain goes through FFmpeg's look-ahead limiter (alimiter, latency-compensated, so nothing moves in time),
then is measured and gained again, a few rounds; whatever still peaks too high is scaled down to the ceiling
(the loudness then falls short of the target, and the report says by how much). Sound that must keep its shape (a
retake's: outside its ranges the input's own, sample for sample) is given one gain instead (`limit=False`): the
target's, or less where its true peak would pass the ceiling (short of the target, as the report says).

Memory: both meters read the sound a few seconds at a time, in float64 only there, and normalising gains and
limits one float32 copy of it in place, so delivering a sound takes about twice its float32 size; whole-sound
float64 copies took 8× (0.9 GB for 10 minutes at 48 kHz).

Very short sound: BS.1770 gates 400 ms blocks, so audio shorter than one block (the model's clips are 0.8–1.6 s,
but a user can cut less) is measured as if looped to fill one block — its mean-square power, which is all the
loudness such a short sound has. Silence (below the −70 LUFS absolute gate) is left as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mmgen.media.delivery import DEFAULT_TARGET
from mmgen.media.filters import filter_audio

TRUE_PEAK_CEILING = -1.0  # dBTP (EBU R128 allows −1 for lossy delivery)
BLOCK_SECONDS = 0.4  # BS.1770 gating block
OVERSAMPLE = 4  # true-peak oversampling (BS.1770-4 Annex 2)
PEAK_CHUNK = 1 << 17  # samples oversampled at once (2.7 s at 48 kHz)
MEASURE_CHUNK = 1 << 17  # samples K-weighted at once
PEAK_CONTEXT = 64  # samples of context on each side of a chunk: more than the oversampling filter's reach (10)
LIMITER_MARGIN_DB = 1.0  # the limiter works on sample peaks: aim this far under the ceiling for the ones between
LIMITER = "attack=1:release=20:level=0:latency=1"  # fast, no auto make-up gain, delay compensated
ROUNDS = 6
ABSOLUTE_GATE = -70.0  # LUFS


@dataclass(frozen=True)
class LoudnessReport:
    """What normalising did: integrated loudness before and after (LUFS, None for silence), true peak after."""

    before: float | None
    after: float | None
    true_peak: float | None  # dBTP after normalising

    def to_json(self) -> dict:
        return {k: (round(v, 2) if v is not None and math.isfinite(v) else None) for k, v in
                (("lufs_before", self.before), ("lufs_after", self.after), ("true_peak_dbtp", self.true_peak))}


def channel_weights(layout: str) -> tuple[float, ...]:
    """BS.1770-4's weight G_i of each channel of `layout` in the loudness sum: 1.41 (+1.5 dB) for the surround pair
    60-120° off centre (side left and right, or back left and right where there is no side pair: 5.1's), 0 for the
    LFE, 1 for the others (1, 1 for stereo; pyloudnorm's weights, which it gives by position, L R C Ls Rs, where
    FFmpeg's orders put the LFE fourth)."""
    import av

    names = [c.name for c in av.AudioLayout(layout).channels]
    surround = ("SL", "SR") if "SL" in names else ("BL", "BR")
    return tuple(0.0 if name.startswith("LFE") else 1.41 if name in surround else 1.0 for name in names)


def integrated_loudness(
    audio: torch.Tensor | np.ndarray, sample_rate: int, weights: tuple[float, ...] | None = None
) -> float | None:
    """BS.1770 integrated loudness of audio (L,), (1, L) or (C, L), in LUFS; None when it is silent (gated out
    entirely). Channels are summed as pyloudnorm's meter sums them: each block's mean-square energy of each channel,
    K-weighted, times its weight G_i (`weights`, channel_weights; 1 each when None), one loudness of all of them.

    pyloudnorm's integrated loudness, not its copies: its Meter.integrated_loudness copies the whole sound in
    float64 and filters it whole (4× the float32 size on top of our own float64 copy). Here its meter's own
    K-weighting filters run MEASURE_CHUNK samples at a time with their state carried over (lfilter's zi: the same
    filtered samples), each 400 ms block's energy is summed from the stretches between block edges, and the gates
    are its gates on those energies — the same value (to ~1e-12 LU, summing order), in memory that does not grow
    with the sound."""
    rows = _rows(audio)
    if not rows.any():
        return None
    block = math.ceil(BLOCK_SECONDS * sample_rate)
    if rows.shape[1] < block:
        rows = np.tile(rows, (1, math.ceil(block / rows.shape[1])))
    with np.errstate(divide="ignore"):
        gains = weights or (1.0,) * len(rows)  # G_i · z_ij summed over the channels (mono: z_j itself, G = 1)
        energies = sum(g * _block_energies(row, sample_rate) for g, row in zip(gains, rows, strict=True))
        loudness = -0.691 + 10.0 * np.log10(energies)  # each block's (BS.1770 eq. 4)
        gated = energies[loudness >= ABSOLUTE_GATE]
        if not len(gated):
            return None
        relative = -0.691 + 10.0 * np.log10(np.mean(gated)) - 10.0
        gated = energies[(loudness > relative) & (loudness > ABSOLUTE_GATE)]  # pyloudnorm's second pass: > both
        value = -0.691 + 10.0 * np.log10(np.mean(gated)) if len(gated) else -math.inf
    return float(value) if math.isfinite(value) else None


def _block_energies(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The mean-square K-weighted energy z_j of each gating block, at pyloudnorm's block edges (its float
    arithmetic, so its int() truncations, exactly) and with its filters, a chunk at a time."""
    import pyloudnorm  # imports scipy.signal: ~1.5 s that a command which measures no loudness should not pay
    from scipy.signal import lfilter

    meter = pyloudnorm.Meter(sample_rate, block_size=BLOCK_SECONDS)
    stages = [(stage.b, stage.a, stage.passband_gain) for stage in meter._filters.values()]  # K-weighting's two
    states = [np.zeros(max(len(b), len(a)) - 1) for b, a, _ in stages]
    overlap = getattr(meter, "overlap", 0.75)  # pyloudnorm 0.1's is fixed, 75 %, inside integrated_loudness
    length, size, step = len(samples), meter.block_size, 1.0 - overlap
    count = int(np.round((length / sample_rate - size) / (size * step))) + 1
    j = np.arange(count)
    lower = (size * (j * step) * sample_rate).astype(np.int64)
    upper = np.minimum((size * (j * step + 1) * sample_rate).astype(np.int64), length)
    edges = np.unique(np.concatenate((lower, upper, [0, length])))  # the stretches between them: no block splits one
    stretches = np.zeros(len(edges) - 1)
    for start in range(0, length, MEASURE_CHUNK):
        chunk = samples[start : start + MEASURE_CHUNK].astype(np.float64)
        for k, (b, a, gain) in enumerate(stages):
            filtered, states[k] = lfilter(b, a, chunk, zi=states[k])
            chunk = gain * filtered
        np.square(chunk, out=chunk)
        first = int(np.searchsorted(edges, start, "right")) - 1
        last = int(np.searchsorted(edges, start + len(chunk), "left"))
        stretches[first:last] += np.add.reduceat(chunk, np.maximum(edges[first:last], start) - start)
    ends = zip(np.searchsorted(edges, lower), np.searchsorted(edges, upper), strict=True)
    return (1.0 / (size * sample_rate)) * np.array([stretches[a:b].sum() for a, b in ends])


def true_peak(audio: torch.Tensor | np.ndarray) -> float:
    """True peak in dBTP: the largest magnitude of the 4× oversampled signal (−inf for silence).

    Oversampled PEAK_CHUNK samples at a time, each chunk with PEAK_CONTEXT samples of the sound on either side for
    the interpolation filter to reach (its 81 taps at 4× reach 10 input samples), so a chunk's oversampled samples
    are bitwise those of the whole sound at once — which took 16× the sound's float32 size (0.7 GB for 4 minutes
    at 48 kHz, in every delivery); a chunk takes ~4 MB."""
    from scipy.signal import resample_poly

    peak = 0.0
    for samples in _rows(audio):  # the highest of any channel's
        for start in range(0, len(samples), PEAK_CHUNK):
            end = min(start + PEAK_CHUNK, len(samples))
            lo, hi = max(start - PEAK_CONTEXT, 0), min(end + PEAK_CONTEXT, len(samples))
            oversampled = resample_poly(samples[lo:hi].astype(np.float64), OVERSAMPLE, 1)
            oversampled = oversampled[(start - lo) * OVERSAMPLE : (end - lo) * OVERSAMPLE]
            peak = max(peak, float(oversampled.max(initial=0.0)), -float(oversampled.min(initial=0.0)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


UNMEASURED = object()  # normalise's `before` when its caller has not measured the sound


def normalise(
    audio: torch.Tensor,
    sample_rate: int,
    target: float = DEFAULT_TARGET,
    ceiling: float = TRUE_PEAK_CEILING,
    weights: tuple[float, ...] | None = None,
    *,
    before: float | None | object = UNMEASURED,
    overwrite: bool = False,
    limit: bool = True,
) -> tuple[torch.Tensor, LoudnessReport]:
    """audio (1, L) — or (C, L), its channels measured together (integrated_loudness's `weights`) and given one
    gain, the limiter's linked across them — brought to `target` LUFS with its true peak at most `ceiling` dBTP,
    and what was done (measuring the result). See `level`."""
    out, before = _levelled(audio, sample_rate, target, ceiling, weights, before, overwrite, limit)
    if before is None:
        return out, LoudnessReport(None, None, true_peak(out) if out.any() else None)
    return out, LoudnessReport(before, integrated_loudness(out, sample_rate, weights), true_peak(out))


def level(
    audio: torch.Tensor,
    sample_rate: int,
    target: float = DEFAULT_TARGET,
    ceiling: float = TRUE_PEAK_CEILING,
    weights: tuple[float, ...] | None = None,
    *,
    before: float | None | object = UNMEASURED,
    overwrite: bool = False,
    limit: bool = True,
) -> torch.Tensor:
    """`normalise`'s sound without its report (the result is not measured): a new float32 tensor of `audio`'s
    shape, gained and limited in place in one interleaved copy (silence is copied as it is). `before`: the sound's
    integrated loudness where the caller has measured it already (with these `weights`), so it is not measured
    twice. `overwrite`: `audio` is the caller's to lose — mono float32, or any float32 given one gain (`limit`
    False), is then gained in its own memory, no copy.
    `limit`: peaks that the target's gain would lift past the ceiling go through the limiter; False: the sound keeps
    its shape, one gain over all of it — the target's, or the one that brings its true peak to the ceiling where
    that is less (the sound is then quieter than the target)."""
    return _levelled(audio, sample_rate, target, ceiling, weights, before, overwrite, limit)[0]


def _levelled(audio: torch.Tensor, sample_rate: int, target: float, ceiling: float,
              weights: tuple[float, ...] | None, before: float | None | object, overwrite: bool, limit: bool = True
              ) -> tuple[torch.Tensor, float | None]:
    """`level`'s sound, and its loudness before (None: silence, left as it is)."""
    channels = audio.shape[0] if audio.dim() == 2 else 1
    if not limit:  # one gain, no limiter: the rows as they are (in their own memory with `overwrite`), not interleaved
        rows = _rows(audio)
        rows = rows if overwrite and rows.dtype == np.float32 else rows.astype(np.float32)
        loudness = integrated_loudness(rows, sample_rate, weights) if before is UNMEASURED else before
        if loudness is not None:
            _gain(rows, min(target - loudness, ceiling - true_peak(rows)))
        return torch.from_numpy(rows).reshape(audio.shape), loudness
    interleave = np.asarray if overwrite else np.array
    frames = interleave(_rows(audio).T, dtype=np.float32, order="C")  # (L, C): the samples interleaved
    samples, rows = frames.reshape(-1), frames.T  # the same memory, flat and as (C, L) rows (views)
    loudness = integrated_loudness(rows, sample_rate, weights) if before is UNMEASURED else before
    if loudness is None:  # silence, or below the absolute gate: as it is
        return _shaped(rows, audio), None
    measured = loudness
    for _ in range(ROUNDS):
        _gain(samples, target - loudness)
        if true_peak(rows) <= ceiling:
            break
        limit = 10 ** ((ceiling - LIMITER_MARGIN_DB) / 20)
        filter_audio(samples, sample_rate, [("alimiter", f"limit={limit}:{LIMITER}")], out=samples,
                     channels=channels)
        loudness = integrated_loudness(rows, sample_rate, weights) or loudness
    over = true_peak(rows) - ceiling
    if over > 0:
        _gain(samples, -over)
    return _shaped(rows, audio), measured


def _shaped(rows: np.ndarray, audio: torch.Tensor) -> torch.Tensor:
    """The (C, L) rows as a tensor of `audio`'s shape (a copy only for more than one channel: its rows laid out)."""
    return torch.from_numpy(rows.reshape(-1) if len(rows) == 1 else np.ascontiguousarray(rows)).reshape(audio.shape)


def _gain(samples: np.ndarray, db: float) -> None:
    """float32 samples scaled by `db` in place, each product taken in float64 and rounded once (numpy's buffered
    cast: a few thousand samples at a time, no copy of the sound)."""
    np.multiply(samples, np.float64(10 ** (db / 20)), out=samples)


def _rows(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    """The samples as (C, L) rows, one per channel ((L,) and (1, L): one), without a copy where they are float32
    or float64 already (a tensor's own memory): the meters take a chunk at a time to float64."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu()
        audio = (audio if audio.dtype in (torch.float32, torch.float64) else audio.float()).numpy()
    audio = np.asarray(audio)
    return audio.reshape(len(audio), -1) if audio.ndim == 2 else audio.reshape(1, -1)
