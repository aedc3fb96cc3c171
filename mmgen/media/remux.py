"""Put a new soundtrack under a user's video, or a new picture over a user's audio, touching the other track as
little as possible: its packets are copied byte for byte when the output's container can hold them (see
mmgen.media.containers: a VP8 WebM into a WebM, H.264 into mp4/mov/mkv), re-encoded otherwise, with a warning.

replace_audio (soundtrack) and replace_video (animate) are the same operation with the roles swapped: keep
one stream of the source, encode the other from a tensor, mux both. By default the new track covers the kept one:
the two start together, where the kept stream starts in the source (the output's 0: a sound delayed 0.5 s behind a
picture that is not kept starts the output, and the new picture with it), and end together: the new sound fits the
kept picture, the kept sound is cut at the new picture's end. `end_together=False` keeps the source's timeline and
each track's own length instead (a retake: the input's two streams may differ in start and length, and stay as
they were; the new track goes at `start` seconds on it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from itertools import islice

import av
import torch
import torch.nn.functional as F

from mmgen.files import atomic_output
from mmgen.media.containers import CONTAINERS, Container, container_for, holders
from mmgen.media.decode import mean_mixed, mixable_channels, mixes_to_stereo
from mmgen.media.encode import DEFAULT_CRF, check_audio, check_video
from mmgen.media.frame_arrays import frame_array
from mmgen.media.notes import logger
from mmgen.media.probe import codec_name, first_stream, open_input, pixel_aspect, probe
from mmgen.media.timeline import declared_end, last_frame_end, origin
from mmgen.media.tracks import (
    Track,
    add_audio,
    add_video,
    audio_frames,
    check_encodable,
    copied,
    decoded,
    encoded,
    frame_clock,
    frame_rate,
    has_alpha,
    holds_floats,
    mux,
    open_output,
    picture_format,
    video_frames,
)
from mmgen.output_checks import check_writable

log = logger(__name__)
KINDS = ("video", "audio")  # output stream order


def replace_audio(
    src_video_path: str | os.PathLike,
    audio: torch.Tensor,
    sample_rate: int,
    out_path: str | os.PathLike,
    *,
    overwrite: bool = False,
    end_together: bool = True,
    encoder: str | None = None,
    start: float = 0.0,
    layout: str = "mono",
    bits: int | None = None,
) -> None:
    """Write `out_path`: the source's video stream (copied when the output's container holds it) + `audio` (1, L)
    as AAC (Opus in WebM; `encoder` if given, e.g. Container.sound_encoder's) from `start` seconds on the source's
    timeline (from its origin). With `end_together`, `start` is where the picture starts (the output's 0) and the
    sound is trimmed or padded with silence to the picture's end; else it is written as it is, on the source's
    timeline; or `audio` (C, L) in `layout` (a retake's, the input's own), at the input's depth `bits` where the
    encoder stores it (tracks.sample_format)."""
    check_audio(audio)
    into = container_for(out_path)
    check_writable(out_path, overwrite)
    soundtrack = audio.detach().float()
    if end_together:
        soundtrack = fit_length(soundtrack, round((video_end(src_video_path) - start) * sample_rate))
    zero = start if end_together else 0.0

    def new_audio(container: av.container.OutputContainer) -> Track:
        stream = add_audio(container, encoder or into.audio_encoder, sample_rate, layout, bits)
        first = round((start - zero) * sample_rate)
        return encoded(stream, audio_frames(soundtrack, sample_rate, first, layout, clip=not holds_floats(stream)))

    _remux(src_video_path, "video", new_audio, math.inf, out_path, overwrite, zero, sample_rate)


def replace_video(
    src_audio_path: str | os.PathLike,
    video: torch.Tensor,
    fps: float,
    out_path: str | os.PathLike,
    *,
    crf: int = DEFAULT_CRF,
    overwrite: bool = False,
    end_together: bool = True,
    start: float = 0.0,
) -> None:
    """Write `out_path`: `video` (T, 3, H, W) as H.264 (VP9 in WebM) at `fps`, its first frame at `start` seconds on
    the source's timeline (from its origin), + the source's audio stream (copied when the container holds it, else
    re-encoded to AAC or Opus). With `end_together`, `start` is where the sound starts (the output's 0) and the sound
    is cut at the video's end (to the packet, ~20-60 ms, when copied); else both are written whole, on the source's
    timeline."""
    check_video(video)
    into = container_for(out_path)
    check_writable(out_path, overwrite)
    zero = start if end_together else 0.0
    clock, first, step = frame_clock(frame_rate(fps), start - zero)

    def new_video(container: av.container.OutputContainer) -> Track:
        height, width = (n + n % 2 for n in video.shape[-2:])
        stream = add_video(container, into.video_encoder, frame_rate(fps), width, height, crf, time_base=clock)
        return encoded(stream, video_frames(video, first, step))

    until = video.shape[0] / fps if end_together else math.inf
    _remux(src_audio_path, "audio", new_video, until, out_path, overwrite, zero)


def _remux(
    src: str | os.PathLike,
    keep: str,
    new_track: Callable[[av.container.OutputContainer], Track],
    until: float,
    out_path: str | os.PathLike,
    overwrite: bool,
    zero: float,
    sample_rate: int | None = None,
) -> None:
    """Mux the source's first `keep` stream, moved so that `zero` seconds on the source's timeline (from its origin)
    is the output's 0, up to `until` seconds on the output's, with the track `new_track` builds (sound at
    `sample_rate`, when it is the new one)."""
    rotation, into = probe(src).rotation, container_for(out_path)
    with open_input(src) as source:
        stream = first_stream(source, keep, src)
        if keep == "audio":  # the kept sound's rate: its own, or where it is re-encoded, one the encoder stores
            rate = stream.codec_context.sample_rate
            rate = rate if into.copies("audio", codec_name(stream)) else into.audio_rate(rate)
        else:
            rate = sample_rate
        with atomic_output(out_path, overwrite) as temp, open_output(temp, out_path, rate) as container:
            other = "audio" if keep == "video" else "video"
            build = {
                keep: lambda: _kept(source, stream, container, into, origin(source) + zero, until, rotation),
                other: lambda: new_track(container),
            }
            mux(container, *(build[kind]() for kind in KINDS))  # streams are added in KINDS order


def _kept(
    source: av.container.InputContainer,
    stream: av.stream.Stream,
    container: av.container.OutputContainer,
    into: Container,
    shift: float,
    until: float,
    rotation: int,
) -> Track:
    """The source stream as an output track, moved `shift` seconds earlier (from the file's own zero): its packets
    copied, or re-encoded when `into` cannot carry them."""
    codec = codec_name(stream)
    if into.copies(stream.type, codec):
        out = container.add_stream_from_template(stream)
        # mp4 picks its own tag for the codec (the source's, e.g. AVI's "XVID", would be refused); for HEVC,
        # "hvc1" is the one Apple players accept.
        out.codec_context.codec_tag = "hvc1" if codec == "hevc" and into.name in ("mp4", "mov") else "\0\0\0\0"
        if stream.type == "video" and stream.average_rate:  # its frame rate, declared as FFmpeg's stream copy
            out.codec_context.framerate = stream.average_rate  # declares it: Matroska's DefaultDuration, without
            # which a copied WebM picture's frames read back lasting 0 and an mkv's rate as 1000 fps
        if stream.metadata.get("alpha_mode") == "1":  # a VP8/VP9 picture's alpha, in its packets: Matroska's flag for
            out.metadata["alpha_mode"] = "1"  # it (AlphaMode), without which players show the picture opaque
        return copied(source, stream, out, shift, until)
    keepers = holders(stream.type, codec)
    audio = stream.type == "audio"
    channels, rate = (mixable_channels(source.name, stream, "stereo"), stream.codec_context.sample_rate) if audio \
        else (0, 0)
    stored = into.audio_rate(rate) if audio else rate  # the encoder resamples the decoded frames to it
    stereo = channels <= 2 or mixes_to_stereo(stream)  # else their mean, mono: FFmpeg has no rule for them
    size = (stream.codec_context.width, stream.codec_context.height) if not audio else (2, 2)
    transparent = not audio and shows_through(source.name, stream)
    encoder, alpha = picture_encoder(into, transparent) if not audio else (into.audio_encoder, False)
    layout = picture_format(*size, encoder, alpha) if not audio else "yuv420p"
    log.warning("%s: %s %s cannot go into %s as is; re-encoding it%s%s%s%s%s", source.name, codec, stream.type,
                into.name, f" at {stored:,} Hz ({into.name} stores no {rate:,} Hz)" if stored != rate else "",
                f" as {layout} to keep its odd {size[0]}×{size[1]} size (not every player plays it)"
                if layout == "yuv444p" else "",
                f" (a {' or '.join(keepers)} output would keep it)" if keepers else "",
                f"; its {channels} channels are mixed to stereo" if channels > 2 and stereo else
                f"; its {channels} channels, in no layout FFmpeg mixes to stereo, are mixed to mono (their mean)"
                if not stereo else "", _alpha_said(into, transparent, encoder, layout) if not audio else "")
    if audio and (declared := declared_end(source, stream)) is not None:  # the decoder's end padding (AAC's) is
        until = min(until, declared - shift)  # no sound: cut at the stream's own end, as read_audio does
    frames = decoded(source, stream, shift, until)
    if audio:
        out = add_audio(container, into.audio_encoder, stored, channels if stereo else 1,
                        stream.codec_context.format.bits if stream.codec_context.format else None)
        frames = frames if stereo else mean_mixed(frames)
    else:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = stream.codec_context.width, stream.codec_context.height  # its own size (picture_format)
        out = add_video(container, encoder, frame_rate(rate), width, height, DEFAULT_CRF, time_base=stream.time_base,
                        alpha=alpha)
        if rotation:
            out.set_display_rotation(rotation)
        out.codec_context.sample_aspect_ratio = pixel_aspect(stream)  # an anamorphic picture stays as wide
    return encoded(out, frames)


def check_kept(src: str | os.PathLike, keep: str, out_path: str | os.PathLike) -> None:
    """Before any work: MediaError when the source's first `keep` stream cannot go into `out_path` — copied as is,
    or re-encoded as _kept does it (a picture at its own size, which the encoder must take; sound of at most
    MAX_CHANNELS channels)."""
    into = container_for(out_path)
    with open_input(src) as source:
        stream = first_stream(source, keep, src)
        codec = codec_name(stream)
        if into.copies(keep, codec):
            return
        if keep == "audio":
            mixable_channels(src, stream, "stereo")
        else:
            context, (encoder, alpha) = stream.codec_context, picture_encoder(into, shows_through(src, stream))
            check_encodable(encoder, context.width, context.height,
                            f"cannot write {out_path}: {src}'s {codec} picture must be re-encoded for {into.name}", alpha)


def picture_encoder(into: Container, transparent: bool) -> tuple[str, bool]:
    """The encoder a kept picture is re-encoded with for `into`, and whether it keeps the picture's alpha channel (a
    `transparent` one, a PNG's or GIF's that shows through: Container.alpha_encoder, ProRes 4444 in mov and mkv, VP9
    in WebM; mp4 holds none, and there it is dropped, with a word: _alpha_said)."""
    if transparent and into.alpha_encoder is not None:
        return into.alpha_encoder, True
    return into.video_encoder, False


ALPHA_FRAMES = 25  # the first frames of a kept picture whose alpha says whether it shows through


def shows_through(path: str | os.PathLike, stream: av.video.stream.VideoStream) -> bool:
    """Whether a picture has transparency: some pixel less than opaque in its first ALPHA_FRAMES frames. A pixel
    format that could carry alpha is not enough: FFmpeg's GIF decoder gives bgra for every GIF, and a PNG or
    QuickTime Animation picture may be rgba/argb with every pixel opaque; these are re-encoded as any picture is
    (H.264 in mov), with no word of alpha. Approximate: only the first frames are read (in a file of its own, before
    the encoder is chosen, not the whole picture twice), so a picture opaque at its start and transparent only
    later is taken as opaque, its alpha dropped; a 12-bit alpha within 1/510 of opaque reads as opaque."""
    if not has_alpha(stream.codec_context.pix_fmt):
        return False
    with open_input(path) as source:
        for frame in islice(source.decode(source.streams[stream.index]), ALPHA_FRAMES):
            if frame_array(frame, "rgba")[..., 3].min() < 255:
                return True
    return False


def _alpha_said(into: Container, transparent: bool, encoder: str, layout: str) -> str:
    """What re-encoding does to a kept picture's alpha channel, for its warning ("" when it has none)."""
    if not transparent:
        return ""
    if into.alpha_encoder is not None:
        return f"; its alpha channel is kept ({encoder}, {layout})"
    keepers = [suffix for suffix, container in CONTAINERS.items() if container.alpha_encoder is not None]
    return f"; its alpha channel is dropped: {into.name} holds none (a {' or '.join(keepers)} output keeps it)"


def video_end(path: str | os.PathLike) -> float:
    """Seconds from the file's start to the end of its video stream: where its last frame (by timestamp) leaves
    the screen (timeline.last_frame_end), read from packets (cheap: nothing is decoded) — how long a soundtrack for it
    must last."""
    with open_input(path) as source:
        stream, last, before = first_stream(source, "video", path), None, None
        for packet in source.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            if last is None or packet.pts >= last.pts:
                before, last = (last.pts if last is not None and packet.pts > last.pts else before), packet
            elif before is None or packet.pts > before:
                before = packet.pts
        if last is None:
            return 0.0
        start, tick = float(last.pts * stream.time_base), float(stream.time_base)
        claimed = float((last.duration or 0) * stream.time_base)
        return last_frame_end(source, stream, start, claimed, None if before is None else before * tick) - origin(source)


def fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """(1, L) → (1, length): cut, or padded with silence."""
    return audio[:, :length] if audio.shape[1] >= length else F.pad(audio, (0, length - audio.shape[1]))
