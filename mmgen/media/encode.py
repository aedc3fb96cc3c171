"""Write clips: an mp4 (H.264 yuv420p + AAC, what every player and editor opens; .mov/.mkv alike, .webm as VP9 +
Opus) or a PCM wav (16-bit; a retake's at its source's depth).

Outputs are atomic (mmgen.files): a failure leaves no file behind, and an existing file is never replaced
unless `overwrite` is set.
"""

from __future__ import annotations

import os

import av
import torch

from mmgen.files import atomic_output
from mmgen.media.containers import container_for
from mmgen.media.tracks import (
    add_audio,
    add_video,
    audio_frames,
    encoded,
    frame_rate,
    holding,
    holds_floats,
    mux,
    open_output,
    video_frames,
)

DEFAULT_CRF = 18  # visually near-lossless H.264
FINITE_CHUNK = 1 << 20  # values checked for NaN/Inf at once (_check_finite)


def write_mp4(
    path: str | os.PathLike,
    video: torch.Tensor | None,
    audio: torch.Tensor | None,
    fps: float,
    sample_rate: int,
    *,
    crf: int = DEFAULT_CRF,
    overwrite: bool = False,
    layout: str = "mono",
    encoder: str | None = None,
    bits: int | None = None,
) -> None:
    """Write video (T, 3, H, W) in [-1, 1] at `fps` and/or audio (1, L) in [-1, 1] at `sample_rate`, both starting
    at time 0 — or audio (C, L) in `layout` (of C channels: an animated sound's own, decode.kept_layout). Odd
    heights/widths are padded to even by repeating the last row/column. The sound is encoded by `encoder` (default:
    the container's; an animated sound's own lossless codec, Container.sound_encoder) at the depth `bits` of the
    file's sound it is made from, where the encoder stores it; float PCM keeps samples past full scale."""
    if video is None and audio is None:
        raise ValueError("write_mp4 needs video, audio or both")
    check_video(video)
    check_audio(audio)
    into = container_for(path)
    rate = sample_rate if audio is not None else None
    with atomic_output(path, overwrite) as temp, open_output(temp, path, rate) as container:
        tracks = []
        if video is not None:
            height, width = (n + n % 2 for n in video.shape[-2:])
            stream = add_video(container, into.video_encoder, frame_rate(fps), width, height, crf)
            tracks.append(encoded(stream, video_frames(video)))
        if audio is not None:
            stream = add_audio(container, encoder or into.audio_encoder, sample_rate, layout, bits)
            tracks.append(encoded(stream, audio_frames(audio, sample_rate, layout=layout, clip=not holds_floats(stream))))
        mux(container, *tracks)


WAV_PCM = {16: "pcm_s16le", 24: "pcm_s24le", 32: "pcm_s32le"}  # a wav's encoder for each depth it is written at
FLOAT_WAV = "pcm_f32le"  # a float sound's wav (an f64 one's too: mmgen's sound is float32)


def write_wav(
    path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, *, overwrite: bool = False, layout: str = "mono",
    bits: int | None = None, floats: bool = False,
) -> None:
    """Write audio (1, L) in [-1, 1] as a mono 16-bit PCM wav — or (C, L) as one in `layout` (of C channels). `bits`:
    the depth of the file's sound it is made from (MediaInfo.audio_bits; a retake's), kept as the retake's own
    encoder keeps it (tracks.holding): a 24-bit source's wav is 24-bit. The model's sound has none: 16-bit.
    `floats`: that sound is float PCM (pcm_f32le), and so is the wav, keeping its samples past full scale (which
    32-bit integers would clip)."""
    check_audio(audio)
    encoder = FLOAT_WAV if floats else WAV_PCM[holding(WAV_PCM, bits)] if bits is not None else WAV_PCM[16]
    with atomic_output(path, overwrite) as temp, av.open(str(temp), "w", format="wav") as container:
        stream = container.add_stream(encoder, rate=sample_rate, layout=layout)
        mux(container, encoded(stream, audio_frames(audio, sample_rate, layout=layout, clip=not holds_floats(stream))))


def check_video(video: torch.Tensor | None) -> None:
    if video is not None and (video.dim() != 4 or video.shape[1] != 3 or video.shape[0] == 0):
        raise ValueError(f"video must be (T, 3, H, W) with T > 0, got {tuple(video.shape)}")
    _check_finite("video", video)


def check_audio(audio: torch.Tensor | None) -> None:
    if audio is not None and (audio.dim() != 2 or not 1 <= audio.shape[0] <= 8 or audio.shape[1] == 0):
        raise ValueError(f"audio must be (C, L) with 1 ≤ C ≤ 8 (mono: C = 1) and L > 0, got {tuple(audio.shape)}")
    _check_finite("audio", audio)


def _check_finite(name: str, x: torch.Tensor | None) -> None:
    """A diverged sampler gives NaN/Inf; say so rather than write garbage or fail inside an encoder. Checked a
    million values at a time: torch.isfinite takes three times the tensor's size in temporaries (an hour's sound)."""
    if x is not None and not all(torch.isfinite(part).all() for part in x.detach().reshape(-1).split(FINITE_CHUNK)):
        raise ValueError(f"{name} contains NaN or Inf values")
