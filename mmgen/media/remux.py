"""Put a new soundtrack under a user's video, or a new picture over a user's audio, touching the other track as
little as possible: its packets are copied byte for byte when mp4 can hold them, re-encoded otherwise.

replace_audio (soundtrack) and replace_video (animate) are the same operation with the roles swapped: keep
one stream of the source, encode the other from a tensor, mux both on the source's timeline (shifted so the
source's start is 0, which is where the new track starts too).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable

import av
import torch
import torch.nn.functional as F

from mmgen.files import atomic_output, check_writable
from mmgen.media.decode import read_audio
from mmgen.media.encode import DEFAULT_CRF, check_audio, check_video
from mmgen.media.probe import cannot_read, codec_name, first_stream, open_input, origin, probe
from mmgen.media.tracks import (
    MP4_COPYABLE,
    Track,
    add_aac,
    add_h264,
    audio_frames,
    copied,
    decoded,
    encoded,
    frame_rate,
    mux,
    open_output,
    video_frames,
)

log = logging.getLogger(__name__)
KINDS = ("video", "audio")  # output stream order


def replace_audio(
    src_video_path: str | os.PathLike,
    audio: torch.Tensor,
    sample_rate: int,
    out_path: str | os.PathLike,
    *,
    mix: float = 0.0,
    overwrite: bool = False,
) -> None:
    """Write `out_path`: the source's video stream (copied) + `audio` (1, L) as AAC, trimmed or padded with
    silence to the video's duration. `mix` in [0, 1] blends in the source's own audio: (1-mix)·new + mix·own."""
    check_audio(audio)
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    check_writable(out_path, overwrite)
    length = round(_stream_end(src_video_path, "video") * sample_rate)
    soundtrack = _fit_length(audio.detach().float(), length)  # (1, length)
    if mix > 0:
        own = _fit_length(_own_audio(src_video_path, sample_rate), length)
        soundtrack = (1 - mix) * soundtrack + mix * own

    def new_audio(container: av.container.OutputContainer) -> Track:
        return encoded(add_aac(container, sample_rate), audio_frames(soundtrack, sample_rate))

    _remux(src_video_path, "video", new_audio, math.inf, out_path, overwrite)


def replace_video(
    src_audio_path: str | os.PathLike,
    video: torch.Tensor,
    fps: float,
    out_path: str | os.PathLike,
    *,
    crf: int = DEFAULT_CRF,
    overwrite: bool = False,
) -> None:
    """Write `out_path`: `video` (T, 3, H, W) as H.264 at `fps` + the source's audio stream (copied if AAC or MP3,
    else re-encoded to AAC), cut at the video's end (to the packet, ~20-60 ms, when copied)."""
    check_video(video)
    check_writable(out_path, overwrite)

    def new_video(container: av.container.OutputContainer) -> Track:
        height, width = (n + n % 2 for n in video.shape[-2:])
        return encoded(add_h264(container, frame_rate(fps), width, height, crf), video_frames(video))

    _remux(src_audio_path, "audio", new_video, video.shape[0] / fps, out_path, overwrite)


def _remux(
    src: str | os.PathLike,
    keep: str,
    new_track: Callable[[av.container.OutputContainer], Track],
    until: float,
    out_path: str | os.PathLike,
    overwrite: bool,
) -> None:
    """Mux the source's first `keep` stream (up to `until` seconds) with the track `new_track` builds."""
    rotation = probe(src).rotation
    with open_input(src) as source:
        stream = first_stream(source, keep, src)
        with atomic_output(out_path, overwrite) as temp, open_output(temp, out_path) as container:
            other = "audio" if keep == "video" else "video"
            build = {
                keep: lambda: _kept(source, stream, container, until, rotation),
                other: lambda: new_track(container),
            }
            mux(container, *(build[kind]() for kind in KINDS))  # streams are added in KINDS order


def _kept(
    source: av.container.InputContainer,
    stream: av.stream.Stream,
    container: av.container.OutputContainer,
    until: float,
    rotation: int,
) -> Track:
    """The source stream as an output track: its packets copied, or re-encoded when mp4 cannot carry them."""
    shift = origin(source)
    codec = codec_name(stream)
    if codec in MP4_COPYABLE[stream.type]:
        into = container.add_stream_from_template(stream)
        # mp4 picks its own tag for the codec (the source's, e.g. AVI's "XVID", would be refused); for HEVC,
        # "hvc1" is the one Apple players accept.
        into.codec_context.codec_tag = "hvc1" if codec == "hevc" else "\0\0\0\0"
        return copied(source, stream, into, shift, until)
    log.warning("%s: %s %s cannot go into mp4 as is; re-encoding it", source.name, codec, stream.type)
    if stream.type == "audio":
        context = stream.codec_context
        into = add_aac(container, context.sample_rate, context.channels)
    else:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = (n - n % 2 for n in (stream.codec_context.width, stream.codec_context.height))
        into = add_h264(container, frame_rate(rate), width, height, DEFAULT_CRF, time_base=stream.time_base)
        if rotation:
            into.set_display_rotation(rotation)
    return encoded(into, decoded(source, stream, shift, until))


def _stream_end(path: str | os.PathLike, kind: str) -> float:
    """Seconds from the file's start to the end of its first `kind` stream, from packet timestamps (exact, and
    cheap: nothing is decoded)."""
    with open_input(path) as source:
        stream, end = first_stream(source, kind, path), 0.0
        for packet in source.demux(stream):
            if packet.pts is not None and packet.size:
                end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base))
        return end - origin(source)


def _own_audio(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    if not probe(path).has_audio:
        raise cannot_read(path, "it has no audio of its own to mix in")
    return read_audio(path, sample_rate)


def _fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """(1, L) → (1, length): cut, or padded with silence."""
    return audio[:, :length] if audio.shape[1] >= length else F.pad(audio, (0, length - audio.shape[1]))
