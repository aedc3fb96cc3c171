"""A sound retake's delivered sound: the input's own samples at the delivered rate, the remade ranges faded in over
their seams, one gain to the loudness target, written into the output (and its --wav).

Memory: an hour of 48 kHz sound is 691 MB a float32 copy. The input's sound is read once and remade in place, only
around the ranges: the model's sound is resampled there (with a second of context each side, so the samples are
those of resampling all of it), the seam weights made there; the gain is applied in that same memory and every
encoder takes it a chunk at a time. So the sound is held about once, its encode's trial (a lossy encoder's: an Opus
WebM) once more (tests/test_retake_memory.py)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mmgen.media import read_audio, replace_audio, write_wav
from mmgen.media.deliver import Delivered, as_encoded, deliver
from mmgen.media.delivery import Delivery
from mmgen.media.loudness import channel_weights
from mmgen.media.resample import resample
from mmgen.media.tracks import float_pcm
from mmgen.pipelines.preflight import TimeRange
from mmgen.pipelines.retake_windows import SEAM_SECONDS, elements, seam_weights


def write_sound(
    source: Path,
    made: torch.Tensor,
    model_rate: int,
    spans: list[TimeRange],
    start: float,
    delivery: Delivery,
    layout: str | None,
    encoder: str,
    files: dict[str, Path],
    *,
    overwrite: bool,
    bits: int | None,
    float_input: bool,
) -> Delivered:
    """Write `files["mp4"]` (the output; and `files["wav"]` where asked): `source` with its sound from `start`
    replaced by its own in `layout` (None: mixed to mono), `made` (1, L) at `model_rate` faded in over `spans`,
    encoded by `encoder` at the input's depth `bits`; `float_input`: the input's sound is float PCM, and so is the
    wav. Returns what was delivered (the sidecar's report)."""
    kept = layout or "mono"
    delivered = as_encoded(_delivered(source, made, model_rate, spans, start, delivery, layout, float_pcm(encoder)),
                           encoder, kept)
    replace_audio(source, delivered.audio, delivered.sample_rate, files["mp4"], overwrite=overwrite,
                  end_together=False, start=start,  # the input's sound where and as long as it was
                  encoder=encoder, layout=kept, bits=bits)
    if "wav" in files:
        write_wav(files["wav"], delivered.audio, delivered.sample_rate, overwrite=overwrite, layout=kept,
                  bits=bits, floats=float_input)  # at the input's depth, as the output's sound
    return delivered


def _delivered(
    source: Path,
    made: torch.Tensor,
    model_rate: int,
    spans: list[TimeRange],
    start: float,
    delivery: Delivery,
    layout: str | None,
    held: bool = False,
) -> Delivered:
    """The input's own sound (from its `start`) at the delivered rate in `layout` (its own channels; None: mixed to
    mono), with the remade ranges (resampled; the model's one channel in each) faded in over the seams, each channel
    against its own sound; then brought to the loudness target with one gain, its channels together — so outside the
    ranges it is the input's, only scaled (no limiter reshapes it; a loud input may stay short of the target).
    `held`: written only as float PCM, which keeps its peaks (deliver's)."""
    rate = delivery.rate(model_rate)
    sound = read_audio(source, rate, start=start, layout=layout)  # (C, L), remade in place
    length, seam = sound.shape[-1], max(2, round(SEAM_SECONDS * rate))
    runs = [(max(a, 0), min(b, length)) for a, b in (elements(r, rate, start) for r in spans)]
    for lo, hi in _stretches(runs, seam, length):
        known = torch.ones(hi - lo, dtype=torch.bool)
        for a, b in runs:
            known[max(a, lo) - lo : max(min(b, hi) - lo, 0)] = False
        own = sound[:, lo:hi]
        own.add_(seam_weights(known, seam) * (_resampled_part(made, model_rate, rate, lo, hi) - own))
    return deliver(sound, rate, Delivery(delivery.loudness, rate), weights=channel_weights(layout or "mono"),
                   limit=False, held=held, overwrite=True)


def _stretches(runs: list[tuple[int, int]], seam: int, length: int) -> list[tuple[int, int]]:
    """The [lo, hi) stretches of a sound of `length` samples that the remade `runs` and their seams reach: each run
    with `seam` samples either side (as far as a seam ramp goes), overlapping ones joined. Seam weights made over a
    stretch are those made over the whole sound (retake_windows.seam_weights)."""
    stretches: list[tuple[int, int]] = []
    for a, b in sorted(run for run in runs if run[0] < run[1]):
        lo, hi = max(0, a - seam), min(length, b + seam)
        if stretches and lo <= stretches[-1][1]:
            stretches[-1] = (stretches[-1][0], max(stretches[-1][1], hi))
        else:
            stretches.append((lo, hi))
    return stretches


def _resampled_part(made: torch.Tensor, model_rate: int, rate: int, lo: int, hi: int) -> torch.Tensor:
    """Samples [lo, hi) of `made` (1, L) at `model_rate` resampled to `rate` (zeros past its end): those of resampling
    all of it, from a part with a second of context either side that starts on a sample both rates share (swr's
    filter reaches ~32 samples)."""
    period = model_rate // math.gcd(model_rate, rate)  # model samples between instants both rates sample
    first = max(0, (lo * model_rate // rate - model_rate) // period * period)
    last = min(made.shape[-1], -(-hi * model_rate // rate) + model_rate)
    if first >= last:  # past the model's sound (a rounding's length): nothing of it
        return torch.zeros(1, hi - lo)
    offset = first * rate // model_rate
    part = resample(made[:, first:last], model_rate, rate)[:, max(lo - offset, 0) : hi - offset]
    return torch.nn.functional.pad(part, (0, hi - lo - part.shape[-1]))
