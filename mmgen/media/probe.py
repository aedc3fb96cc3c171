"""Open media files safely and describe them: what streams, how long, how big, which way up.

Every read in mmgen.media goes through `open_input`, so a missing, empty, garbage or truncated file — or one
that fails half-way through decoding — becomes one MediaError line naming the path, never a PyAV traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av

from mmgen.errors import MediaError
from mmgen.input_files import why_not_a_file
from mmgen.media.frame_times import FrameGaps, gaps_of
from mmgen.media.notes import note
from mmgen.media.timeline import origin, stream_duration, stream_start

MAX_PIXEL_ASPECT = 4  # anamorphic formats stay within 2:1 (1.33 HDV, 1.5 DVCPRO HD, 2 for 2x lenses)
MAX_CHANNELS = 64  # the most audio channels libswresample (SWR_CH_MAX) mixes to mono; more is refused up front


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` found. Sizes are as displayed (after rotation); durations in seconds; codecs are FFmpeg
    names ("h264", "aac", "mp3", ...). `frames` is what the container header says, None if it does not say."""

    path: Path
    duration: float
    has_video: bool
    has_audio: bool
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    frames: int | None = None
    rotation: int = 0  # degrees counter-clockwise a player turns the picture: 0, 90, 180 or 270
    video_duration: float | None = None
    audio_duration: float | None = None
    audio_channels: int | None = None
    audio_bits: int | None = None  # bits a sample of its lossless sound holds (sample_depth): 16, 24, 32; lossy: None
    video_start: float = 0.0  # seconds from the file's timeline zero (origin: where reads begin) to the stream's start
    audio_start: float = 0.0


def cannot_read(path: str | os.PathLike, reason: str) -> MediaError:
    return MediaError(f"cannot read {path}: {' '.join(reason.split())}")


@contextmanager
def open_input(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open `path` for reading; any PyAV/FFmpeg error inside the block becomes a MediaError naming it."""
    source = Path(path)
    if why := why_not_a_file(source):
        raise cannot_read(source, why)
    if source.stat().st_size == 0:
        raise cannot_read(source, "the file is empty")
    try:
        with av.open(str(source), metadata_errors="replace") as container:
            if not (container.streams.video or container.streams.audio):
                raise cannot_read(source, "it has no video or audio stream")
            yield container
    except av.error.FFmpegError as e:
        raise cannot_read(source, f"not a readable media file or damaged ({e.strerror or e})") from e


def first_stream(
    container: av.container.InputContainer, kind: str, path: str | os.PathLike
) -> av.stream.Stream:
    """The file's first "video" or "audio" stream (every read and copy of the file uses this one, and says so
    when there are more); MediaError naming `path` if it has none."""
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        raise cannot_read(path, f"it has no {kind} stream")
    if len(streams) > 1:
        note(path, f"using {kind} stream 0 of {len(streams)}; the others are left out",
             f"extra {kind} streams left out (stream 0 used)")
    return decodable(streams[0], path)


def decodable(stream: av.stream.Stream, path: str | os.PathLike) -> av.stream.Stream:
    """`stream` itself, or a MediaError when this FFmpeg build has no decoder for its codec (PyAV then gives
    the stream no codec context, and decoding would fail with a bare "Decoder not found")."""
    if stream.codec_context is None:
        raise cannot_read(path, f"its {stream.type} codec is not supported by this FFmpeg build (no decoder)")
    return stream


def codec_name(stream: av.stream.Stream) -> str:
    """The format's name ("mp3"), not the decoder's ("mp3float")."""
    return stream.codec_context.codec.canonical_name


def sample_depth(stream: av.stream.Stream) -> int | None:
    """Bits a sample of a lossless sound holds: a PCM codec's own (pcm_s24le: 24), a FLAC's as its STREAMINFO says
    (24 bits decode to 32-bit samples), else what its samples decode to (ALAC). None for a lossy codec's sound,
    which holds no depth, or one that does not decode."""
    context = stream.codec_context
    if context.format is None or not context.codec.lossless:
        return None
    if pcm := re.fullmatch(r"pcm_[suf](\d+)(?:le|be)?", codec_name(stream)):
        return int(pcm[1])
    info = context.extradata or b""
    info = info[8:] if info.startswith(b"fLaC") else info  # Matroska's: the file's header, then STREAMINFO's
    if codec_name(stream) == "flac" and len(info) >= 34:
        return ((info[12] & 1) << 4 | info[13] >> 4) + 1  # 5 bits: bits per sample - 1
    return context.format.bits


def pixel_aspect(stream: av.video.stream.VideoStream) -> Fraction:
    """How wide a stored pixel is shown, over how tall (the sample aspect ratio): 1 for square pixels, 8:9 or
    32:27 for DV/DVD, 4:3 for HDV's 1440-wide 16:9 pictures. The container's value first, then the codec's, as
    FFmpeg and players choose; 1 when neither says, or when one claims a ratio beyond MAX_PIXEL_ASPECT (no real
    format stretches a pixel that far, and honouring it would keep a sliver of the picture)."""
    for claimed in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if claimed:  # None or 0/1: not said
            ratio = Fraction(claimed)
            return ratio if 1 / MAX_PIXEL_ASPECT <= ratio <= MAX_PIXEL_ASPECT else Fraction(1)
    return Fraction(1)


def display_rotation(degrees: float | None) -> int:
    """A display-matrix angle (counter-clockwise, -180..180) as one of 0, 90, 180, 270."""
    return int(round((degrees or 0) / 90)) % 4 * 90


def frame_gaps(path: str | os.PathLike, limit: int | None = None) -> FrameGaps | None:
    """How far apart the first video stream's frames are, from its packets' timestamps (demuxed, nothing decoded),
    in presentation order — of its first `limit` packets, or all; None with fewer than two frames."""
    with open_input(path) as container:
        stream = container.streams.video[0]
        packets = (packet.pts for packet in container.demux(stream) if packet.pts is not None)
        times = sorted(set(islice(packets, limit)))
        tick = Fraction(stream.time_base)
    return gaps_of(times, tick)


def frame_count(path: str | os.PathLike) -> int:
    """How many frames the first video stream holds, from its packets (demuxed, nothing decoded): what the file
    holds in every container — Matroska and WebM record no per-stream count, which MediaInfo.frames reads."""
    with open_input(path) as container:
        return sum(packet.size > 0 for packet in container.demux(container.streams.video[0]))


FRAMES_FOR_RATE = 300  # frames whose timestamps probe reads to name a clip's rate (10 s at 30 fps: 30 vs 29.97 at 1 ms)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe `path` (MediaError if it is not readable media). Decodes one video frame to learn its rotation."""
    with open_input(path) as container:
        fields: dict = {}
        durations = []
        if container.streams.video:
            video = decodable(container.streams.video[0], path)  # first_stream's (which says when there are more)
            context = video.codec_context
            # A steady clip's rate is its frames' own (steady_rate); FFmpeg's average counts the last frame's
            # duration, which a muxer may write short, and a clock's rounding (a Matroska clip's 1 ms: 30.03 fps).
            gaps = frame_gaps(path, FRAMES_FOR_RATE)
            rate = (gaps and gaps.rate) or video.average_rate or video.guessed_rate or video.base_rate
            rotation = _first_frame_rotation(container, video)
            width, height = context.width, context.height
            fields |= dict(
                fps=float(rate) if rate else None,
                width=height if rotation % 180 else width,
                height=width if rotation % 180 else height,
                video_codec=codec_name(video),
                frames=video.frames or None,
                rotation=rotation,
                video_duration=stream_duration(container, video),
                video_start=stream_start(container, video) - origin(container),
            )
            durations.append(fields["video_duration"])
        if container.streams.audio:
            audio = decodable(container.streams.audio[0], path)
            fields |= dict(
                audio_codec=codec_name(audio),
                sample_rate=audio.codec_context.sample_rate,
                audio_channels=audio.codec_context.channels,
                audio_bits=sample_depth(audio),
                audio_duration=stream_duration(container, audio),
                audio_start=stream_start(container, audio) - origin(container),
            )
            durations.append(fields["audio_duration"])
        known = [d for d in durations if d is not None]
        return MediaInfo(
            path=Path(path),
            duration=max(known) if known else 0.0,
            has_video=bool(container.streams.video),
            has_audio=bool(container.streams.audio),
            **fields,
        )


def _first_frame_rotation(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> int:
    for frame in container.decode(video):
        return display_rotation(frame.rotation)
    return 0
