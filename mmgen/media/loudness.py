"""Loudness normalisation to an integrated-loudness target (ITU-R BS.1770-4 / EBU R128), e.g. −16 LUFS, under a
true-peak ceiling (−1 dBTP), never clipping.

Measuring is pyloudnorm's BS.1770 meter (K-weighting, 400 ms blocks, absolute and relative gates); true peak is
the BS.1770-4 Annex 2 method (4× polyphase oversampling, scipy). Sound whose peaks would pass the ceiling at the
target gain goes through FFmpeg's look-ahead limiter (alimiter, latency-compensated, so nothing moves in time),
then is measured and gained again, a few rounds; whatever still peaks too high is scaled down to the ceiling
(the loudness then falls short of the target, and the report says by how much).

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
PEAK_CONTEXT = 64  # samples of context on each side of a chunk: more than the oversampling filter's reach (10)
LIMITER_MARGIN_DB = 1.0  # the limiter works on sample peaks: aim this far under the ceiling for the ones between
LIMITER = "attack=1:release=20:level=0:latency=1"  # fast, no auto make-up gain, delay compensated
ROUNDS = 6


@dataclass(frozen=True)
class LoudnessReport:
    """What normalising did: integrated loudness before and after (LUFS, None for silence), true peak after."""

    before: float | None
    after: float | None
    true_peak: float | None  # dBTP after normalising

    def to_json(self) -> dict:
        return {k: (round(v, 2) if v is not None and math.isfinite(v) else None) for k, v in
                (("lufs_before", self.before), ("lufs_after", self.after), ("true_peak_dbtp", self.true_peak))}


def integrated_loudness(audio: torch.Tensor | np.ndarray, sample_rate: int) -> float | None:
    """BS.1770 integrated loudness of mono audio, in LUFS; None when it is silent (gated out entirely)."""
    samples = _mono64(audio)
    if not samples.any():
        return None
    block = math.ceil(BLOCK_SECONDS * sample_rate)
    if len(samples) < block:
        samples = np.tile(samples, math.ceil(block / len(samples)))
    import pyloudnorm  # imports scipy.signal: ~1.5 s that a command which measures no loudness should not pay

    value = float(pyloudnorm.Meter(sample_rate, block_size=BLOCK_SECONDS).integrated_loudness(samples))
    return value if math.isfinite(value) else None


def true_peak(audio: torch.Tensor | np.ndarray) -> float:
    """True peak in dBTP: the largest magnitude of the 4× oversampled signal (−inf for silence).

    Oversampled PEAK_CHUNK samples at a time, each chunk with PEAK_CONTEXT samples of the sound on either side for
    the interpolation filter to reach (its 81 taps at 4× reach 10 input samples), so a chunk's oversampled samples
    are bitwise those of the whole sound at once — which took 16× the sound's float32 size (0.7 GB for 4 minutes
    at 48 kHz, in every delivery); a chunk takes ~4 MB."""
    from scipy.signal import resample_poly

    samples, peak = _mono64(audio), 0.0
    for start in range(0, len(samples), PEAK_CHUNK):
        end = min(start + PEAK_CHUNK, len(samples))
        lo, hi = max(start - PEAK_CONTEXT, 0), min(end + PEAK_CONTEXT, len(samples))
        oversampled = resample_poly(samples[lo:hi], OVERSAMPLE, 1)[(start - lo) * OVERSAMPLE : (end - lo) * OVERSAMPLE]
        peak = max(peak, float(np.abs(oversampled).max(initial=0.0)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def normalise(
    audio: torch.Tensor, sample_rate: int, target: float = DEFAULT_TARGET, ceiling: float = TRUE_PEAK_CEILING
) -> tuple[torch.Tensor, LoudnessReport]:
    """audio (1, L) brought to `target` LUFS with its true peak at most `ceiling` dBTP; same shape."""
    before = integrated_loudness(audio, sample_rate)
    if before is None:
        return audio, LoudnessReport(None, None, None if not audio.any() else true_peak(audio))
    samples = _mono64(audio)
    loudness = before
    for _ in range(ROUNDS):
        samples = samples * 10 ** ((target - loudness) / 20)
        if true_peak(samples) <= ceiling:
            break
        limit = 10 ** ((ceiling - LIMITER_MARGIN_DB) / 20)
        limited, _ = filter_audio(samples, sample_rate, [("alimiter", f"limit={limit}:{LIMITER}")])
        samples = _fit(limited.astype(np.float64), len(samples))
        loudness = integrated_loudness(samples, sample_rate) or loudness
    over = true_peak(samples) - ceiling
    if over > 0:
        samples = samples * 10 ** (-over / 20)
    out = torch.from_numpy(samples.astype(np.float32)).reshape(audio.shape)
    return out, LoudnessReport(before, integrated_loudness(out, sample_rate), true_peak(out))


def _mono64(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().double().numpy()
    return np.asarray(audio, dtype=np.float64).reshape(-1)


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    return samples[:length] if len(samples) >= length else np.pad(samples, (0, length - len(samples)))
