"""The true peak and loudness of sound as a lossy encoder (AAC, Opus) delivers it, and sound kept under its ceiling
there.

Quantisation lifts peaks: a loud onset levelled to −1 dBTP decodes up to ~0.5 dB higher from an AAC stream. So the
sound is encoded as the writer will encode it (tracks.set_audio), decoded and measured; where it passes the ceiling
it is lowered by the overshoot and tried again (ROUNDS at most). The encoders are deterministic: the writer's own
encode of the sound returned is the last trial's, and its measured peak and loudness are the delivered file's (an
encoder that codes a sound coarsely changes its loudness too: FFmpeg's fast AAC coder's a model's clip by −0.8 LU).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

from mmgen.media.frame_arrays import frame_array
from mmgen.media.loudness import channel_weights, integrated_loudness, true_peak
from mmgen.media.tracks import BIT_RATES, audio_frames, scaled, set_audio

ROUNDS = 8  # trial encodes at most; each lowers the sound by its overshoot (AAC's twoloop coder's lift of a loud
# onset is erratic: 0.07-2.4 dB as the gain moves 0.1 dB, so one lowering can land over the ceiling again)
SLACK = 8192  # samples a channel the decoded sound may run past the sound (AAC's priming and padding: ~2,048)
MARGIN_DB = 0.05  # lowered this much more than the overshoot, so the next trial lands under the ceiling


@dataclass(frozen=True)
class Encodable:
    audio: torch.Tensor  # the sound to encode: the one given, or lowered under the ceiling
    true_peak: float | None  # dBTP of its decoded encode (None: silence)
    loudness: float | None  # LUFS of its decoded encode (None: silence)


def lossy(encoder: str) -> bool:
    """Whether `encoder` changes the samples it stores (a lossless one's are the sound's own)."""
    return encoder in BIT_RATES


def encoded_peak(
    audio: torch.Tensor, sample_rate: int, encoder: str, layout: str = "mono", scale: float = 1.0
) -> tuple[float | None, float | None]:
    """True peak (dBTP) and loudness (LUFS, its channels weighted as `layout`'s) of `audio` (C, L) in `layout` encoded
    by `encoder` as mmgen writes it, decoded; None for silence: its samples as a player plays them from the file
    (_heard). `scale`: of `audio` times it (tracks.scaled), without a copy of it."""
    coder = av.CodecContext.create(encoder, "w")
    coder.sample_rate, coder.layout, coder.time_base = sample_rate, layout, Fraction(1, sample_rate)
    set_audio(coder, encoder, layout)
    coder.open()
    decoder = av.CodecContext.create(av.Codec(encoder, "w").canonical_name, "r")
    decoder.extradata = coder.extradata

    def decoded() -> Iterator[av.AudioFrame]:
        for frame in itertools.chain(audio_frames(audio, sample_rate, layout=layout, scale=scale), [None]):
            for packet in coder.encode(frame):
                yield from decoder.decode(packet)
        yield from decoder.decode(None)

    heard = _heard(decoded(), audio.shape[0], audio.shape[-1])
    if heard is None:
        return None, None
    peak = true_peak(heard)
    return (float(peak) if np.isfinite(peak) else None), integrated_loudness(heard, sample_rate, channel_weights(layout))


def under_ceiling(
    audio: torch.Tensor, sample_rate: int, encoder: str, layout: str = "mono", ceiling: float | None = None
) -> Encodable:
    """`audio` as the lossy `encoder` is to be given it: lowered, where its decoded encode passes `ceiling` dBTP,
    until it does not (None: as it is, only measured). Each trial scales the sound as it encodes it, and the lowered
    sound is made once, at the end: a long sound is held twice at most (it and its trial's decode, or it lowered)."""
    gain = 0.0
    peak, loudness = encoded_peak(audio, sample_rate, encoder, layout)
    for _ in range(ROUNDS):
        if ceiling is None or peak is None or peak <= ceiling:
            break
        gain -= peak - ceiling + MARGIN_DB
        peak, loudness = encoded_peak(audio, sample_rate, encoder, layout, scale=10 ** (gain / 20))
    return Encodable(scaled(audio, 10 ** (gain / 20)) if gain else audio, peak, loudness)


def _heard(frames: Iterable[av.AudioFrame], channels: int, length: int) -> np.ndarray | None:
    """The decoded `frames` of `channels` channels as (C, length) rows (None: no frame): the sound's samples as a
    player plays them from the file, not the encoder's priming before them nor its padding after. The frames are
    contiguous and placed by where the last one ends: a first frame's stamp is the packet's (AAC's from −1024, Opus's
    from −312), but an Opus decoder has already dropped its pre-skip from it (648 samples stamped −312), so placing
    each frame by its own stamp cut 312 samples of the sound and measured as many of padding. Each frame is written
    into one buffer as it is decoded (interleaved, grown in place as decode._joined grows its), so the trial holds
    the sound once, not as its frames and then their join."""
    buffer = np.zeros((length + SLACK) * channels, np.float32)  # zeros: pages the decode never reaches cost nothing
    end, last = 0, None
    for frame in frames:
        samples = frame_array(frame).T.reshape(-1)  # (n·C,) interleaved
        if end + len(samples) > len(buffer):
            buffer.resize(max(end + len(samples), len(buffer) + len(buffer) // 8), refcheck=False)  # no view of it yet
        buffer[end : end + len(samples)] = samples
        end, last = end + len(samples), frame
    if last is None:
        return None
    total = end // channels
    first = (last.pts or 0) + last.samples - total  # the first decoded sample's time
    return buffer[: total * channels].reshape(total, channels).T[:, max(0, -first) : max(0, length - first)]
