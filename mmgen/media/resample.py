"""Resample delivered sound to the rate editors expect (48 kHz by default) with FFmpeg's swr at high quality,
to an exact length: N samples at rate r become round(N·R/r) at rate R, starting at the same instant, so a
soundtrack still ends exactly where its video does."""

from __future__ import annotations

import numpy as np
import torch

from mmgen.media.filters import filter_audio

# swr's polyphase filter, longer and sharper than its defaults (32 taps, 2^10 phases, linear interpolation):
# stop-band rejection well past 16-bit, passband flat to 97% of the lower Nyquist.
SWR_QUALITY = "filter_size=64:phase_shift=12:linear_interp=0:cutoff=0.97"


def resampled_length(length: int, from_rate: int, to_rate: int) -> int:
    return round(length * to_rate / from_rate)


def resample(audio: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """audio (1, L) at `from_rate` → (1, round(L·to_rate/from_rate)) at `to_rate` (the same tensor when the rates
    are equal)."""
    if from_rate == to_rate:
        return audio
    length = resampled_length(audio.shape[-1], from_rate, to_rate)
    out = np.empty(length, np.float32)  # swr gives round-down at the very end on some ratios: filter_audio pads
    filter_audio(audio.detach().float().reshape(-1).numpy(), from_rate, [("aresample", f"{to_rate}:{SWR_QUALITY}")],
                 out=out)
    return torch.from_numpy(out).reshape(1, length)
