"""The tracks of an output mp4 as packet streams — encoded from a tensor, copied packet-for-packet from a
source file, or re-encoded from it — and one muxer loop that interleaves any of them by time.

write_mp4, replace_audio and replace_video are each just a choice of two tracks. Timing rules (DESIGN §3):
every frame handed to an encoder carries an explicit pts on a timeline that starts at 0, so the AAC encoder's
priming delay ends up in the mp4 edit list instead of delaying the sound by ~64 ms.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from mmgen.disk_failures import failure_writing
from mmgen.errors import MediaError
from mmgen.media.frame_arrays import audio_frame, frame_array
from mmgen.media.probe import cannot_read
from mmgen.media.timeline import lasts_for, stream_rate

# Of the lossy sound encoders, per channel, and their settings beyond it (AUDIO_OPTIONS). FFmpeg's AAC encoder
# (libavcodec 62), worst 1024-sample frame's signal to noise, loudness change and true-peak lift, on the demo model's
# seeds 3, 4, 15, two soundtracks, a −16 LUFS tonal wav and a 1 kHz tone at −9 LUFS: its "twoloop" coder at 192 kb/s
# 0.9-34 dB (the tonal wav 0.9, a soundtrack +2.5 dB peak); its "fast" coder at 192 kb/s 13-47 dB, but the demo
# clips 0.5-0.8 LU quieter and the tone 0.3; twoloop at 256 kb/s 26-30 dB on each, loudness within 0.01 LU, peaks
# up to +0.8 dB (the trial encode takes them back under the ceiling: encoded_peak).
BIT_RATES = {"aac": 256_000, "libopus": 96_000}
AUDIO_OPTIONS = {"aac": {"aac_coder": "twoloop"}}
# Constant-quality settings of the picture encoders, per encoder: the crf a caller gives goes in as is for
# x264; libvpx-vp9 takes crf with bit rate 0 (its constant-quality mode) and a speed setting. ProRes has profiles,
# not a crf: 4444, the one that holds an alpha channel (Container.alpha_encoder).
VIDEO_OPTIONS = {"libx264": {}, "libvpx-vp9": {"b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}}
PROFILES = {"prores_ks": {"profile": "4444"}}
# The pixel format each encoder keeps an alpha channel in (a kept picture's: PNG's rgba, QuickTime Animation's argb).
ALPHA_FORMATS = {"prores_ks": "yuva444p10le", "libvpx-vp9": "yuva420p"}
AUDIO_CHUNK = 4096  # samples per frame handed to the AAC encoder (it re-frames to 1024 itself)
Track = Iterator[av.Packet]


def frame_rate(fps: float) -> Fraction:
    """fps as an exact ratio (10 → 10/1, 29.97 → 2997/100, 30000/1001 stays NTSC)."""
    return Fraction(fps).limit_denominator(1001)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) [-1, 1] → (T, H, W, 3) uint8, rounded (the official code truncates, which darkens by half a
    level on average)."""
    return ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def pad_to_even(video: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) → even H and W by repeating the last row/column (yuv420p needs even sizes; padding keeps every
    source pixel and adds at most one line, where scaling would resample the whole picture)."""
    h, w = video.shape[-2:]
    if h % 2 == 0 and w % 2 == 0:
        return video
    return F.pad(video.float(), (0, w % 2, 0, h % 2), mode="replicate")


def add_video(
    container: av.container.OutputContainer,
    encoder: str,
    rate: Fraction,
    width: int,
    height: int,
    crf: int,
    time_base: Fraction | None = None,
    alpha: bool = False,
) -> av.video.stream.VideoStream:
    """A picture stream ("libx264", or "libvpx-vp9" for WebM; with `alpha`, Container.alpha_encoder's) of
    `width`×`height` in picture_format's pixel format, at constant quality `crf` (ProRes: its 4444 profile); frames
    will carry pts in `time_base` (default 1/rate)."""
    stream = container.add_stream(encoder, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, picture_format(width, height, encoder, alpha)
    stream.codec_context.time_base = time_base or 1 / rate
    stream.options = PROFILES.get(encoder) or {"crf": str(crf), **VIDEO_OPTIONS.get(encoder, {})}
    return stream


def picture_format(width: int, height: int, encoder: str = "libx264", alpha: bool = False) -> str:
    """The pixel format a `width`×`height` picture is encoded in: yuv420p, what every player plays, when both sides
    are even; else yuv444p, which holds any size (4:2:0 halves the colour planes, so x264 refuses odd sizes) — a
    re-encoded 1281×721 or 1×4000 picture keeps its size (H.264 4:4:4 plays in FFmpeg-based players, VLC, mpv;
    not in QuickTime or browsers). A picture with an alpha channel, in the format its encoder keeps it in
    (ALPHA_FORMATS)."""
    if alpha:
        return ALPHA_FORMATS[encoder]
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


def has_alpha(pix_fmt: str | None) -> bool:
    """Whether pictures in pixel format `pix_fmt` (a decoder's: "rgba", "argb", "yuva444p12le") carry an alpha
    channel."""
    try:
        return any(component.is_alpha for component in av.VideoFormat(pix_fmt or "").components)
    except ValueError:
        return False


def check_encodable(encoder: str, width: int, height: int, why: str, alpha: bool = False) -> None:
    """Before any work: MediaError when `encoder` refuses a `width`×`height` picture (x264 and libvpx have their
    largest sizes), found by opening the encoder as add_video sets it up. `why` begins the message ("cannot write
    OUT: IN's png picture must be re-encoded for mov")."""
    refused = encoder_refusal(encoder, width=width, height=height, pix_fmt=picture_format(width, height, encoder, alpha),
                              time_base=Fraction(1, 25), options=dict(PROFILES.get(encoder, {})))
    if refused is not None:
        raise MediaError(f"{why}, and {encoder} cannot encode its {width}×{height} size "
                         f"({refused.strerror or refused})") from refused


def encoder_refusal(encoder: str, **settings: object) -> av.error.FFmpegError | None:
    """Why `encoder` does not take `settings` (its codec context's: width, pix_fmt, layout, sample_rate, …, set in
    the order given), as FFmpeg says opening it with them; None where it takes them. The one way mmgen asks an
    encoder before any work whether it can write a picture's size (check_encodable) or a sound's channels
    (decode.kept_layout)."""
    context = av.CodecContext.create(encoder, "w")
    for name, value in settings.items():
        setattr(context, name, value)
    try:
        context.open()
    except av.error.FFmpegError as e:
        return e
    return None


def add_audio(
    container: av.container.OutputContainer, encoder: str, sample_rate: int, channels: int | str = 1,
    bits: int | None = None,
) -> av.audio.stream.AudioStream:
    """An AAC or Opus ("libopus", for WebM) stream — or a lossless one (Container.sound_encoder: PCM, FLAC, ALAC) —
    mono or stereo (more source channels are downmixed to stereo as they are encoded), or in the layout `channels`
    names (a kept sound's own: decode.kept_layout). `bits`: the sample depth of the file's sound it is made from
    (MediaInfo.audio_bits), kept where the encoder stores it (sample_format)."""
    codec = av.Codec(encoder, "w")
    rates = codec.audio_rates
    if rates and sample_rate not in rates:
        raise MediaError(f"{codec.name} cannot store {sample_rate} Hz audio",
                         hint=f"use --sample-rate with one of {sorted(rates)} Hz")
    layout = channels if isinstance(channels, str) else "mono" if channels == 1 else "stereo"
    stream = container.add_stream(encoder, rate=sample_rate, layout=layout)
    set_audio(stream.codec_context, encoder, layout, bits)
    return stream


def set_audio(context: av.CodecContext, encoder: str, layout: str, bits: int | None = None) -> None:
    """Set up the sound encoder `context` of `encoder` in `layout` as every sound mmgen writes is encoded (its
    sample format, bit rate and options): the output's stream (add_audio) and a trial of it alike
    (encoded_peak), so that the two encode alike."""
    context.format = sample_format(av.Codec(encoder, "w"), bits)  # PyAV converts the frames
    if encoder in BIT_RATES:  # a lossless encoder takes none
        context.bit_rate = BIT_RATES[encoder] * len(av.AudioLayout(layout).channels)
    context.options = dict(AUDIO_OPTIONS.get(encoder, {}))


def sample_format(codec: av.Codec, bits: int | None) -> str:
    """The sample format `codec` encodes in: float where it takes one (AAC, Opus); for sound from a file's of
    `bits` bits a sample, the narrowest that holds them, else its widest (`holding`) — a 24-bit FLAC's sound
    (decoded as s32) stays 24 bits in FLAC or ALAC (FFmpeg's encoders take s32 as 24 bits) and 16 bits stay 16 —
    else its first."""
    formats = list(codec.audio_formats or ())
    if floats := [f.name for f in formats if f.name in ("fltp", "flt")]:
        return floats[0]
    if bits is None:
        return formats[0].name
    depth = holding([f.bits for f in formats], bits)
    return next(f.name for f in formats if f.bits == depth)


def holding(depths: Iterable[int], bits: int) -> int:
    """Of the sample depths a writer offers, the one sound of `bits` bits a sample is kept at: the narrowest that
    holds them, else the widest (sample_format's rule, and a --wav's)."""
    depths = sorted(depths)
    return next((depth for depth in depths if depth >= bits), depths[-1])


def frame_clock(rate: Fraction, start: float = 0.0) -> tuple[Fraction, int, int]:
    """The clock of a picture at `rate` frames per second whose first frame is shown at `start` seconds: (time base,
    first frame's pts, pts from one frame to the next). One tick a frame (1/rate) where `start` falls on a frame,
    else a thousand (a start to a thousandth of a frame: a picture that began 22 ms after its sound)."""
    frames = start * rate
    if abs(frames - round(frames)) < 1e-6:
        return 1 / rate, round(frames), 1
    return 1 / (rate * 1000), round(frames * 1000), 1000


def video_frames(video: torch.Tensor, first: int = 0, step: int = 1) -> Iterator[av.VideoFrame]:
    """(T, 3, H, W) [-1, 1] → rgb24 frames with pts first + k·step (in the encoder's time base: frame_clock)."""
    for k, pixels in enumerate(to_uint8(pad_to_even(video))):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels.numpy()), format="rgb24")
        frame.pts = first + k * step
        yield frame


def audio_frames(
    audio: torch.Tensor, sample_rate: int, first: int = 0, layout: str = "mono", clip: bool = True, scale: float = 1.0
) -> Iterator[av.AudioFrame]:
    """(C, L) [-1, 1] → float frames in `layout` (of C channels: mono for (1, L)) with pts = first sample's index
    (from sample `first`), time base 1/sample_rate. Packed (interleaved): PyAV's planar frames crash on 8 channels.
    `clip` False keeps samples past full scale, for an encoder that holds them (holds_floats). `scale`: each sample
    times it first (in float32, as scaled() scales all of them). A chunk at a time: no copy of the whole sound (an
    hour of it is 691 MB a channel)."""
    samples = audio.detach().float().numpy()
    if len(av.AudioLayout(layout).channels) != samples.shape[0]:
        raise ValueError(f"{samples.shape[0]} channels of audio cannot be {layout}")
    for start in range(0, samples.shape[1], AUDIO_CHUNK):
        chunk = samples[:, start : start + AUDIO_CHUNK].T.copy()  # (n, C): interleaved, a copy of its own
        if scale != 1.0:
            np.multiply(chunk, np.float32(scale), out=chunk)
        if clip:
            np.clip(chunk, -1, 1, out=chunk)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = first + start
        frame.time_base = Fraction(1, sample_rate)
        yield frame


def scaled(audio: torch.Tensor, scale: float) -> torch.Tensor:
    """`audio` times `scale`, a new float32 tensor, each sample as audio_frames(scale=) scales it."""
    return torch.from_numpy(audio.detach().float().numpy() * np.float32(scale))


def holds_floats(stream: av.stream.Stream) -> bool:
    """Whether `stream`'s encoder stores float samples as they are (float PCM: an f32 sound's own), so sound past
    full scale need not be clipped for it; every other file holds [-1, 1]."""
    return float_pcm(stream.codec_context.codec.name)


def float_pcm(encoder: str) -> bool:
    """Whether `encoder` writes float PCM (pcm_f32le, pcm_f64le …), which holds samples past full scale."""
    return encoder.startswith("pcm_f")


def encoded(stream: av.stream.Stream, frames: Iterator[av.frame.Frame]) -> Track:
    """Packets of `frames` encoded by `stream`, then the encoder's buffered tail."""
    for frame in frames:
        yield from stream.encode(frame)
    yield from stream.encode(None)


def copied(
    source: av.container.InputContainer,
    stream: av.stream.Stream,
    into: av.stream.Stream,
    shift: float,
    until: float,
) -> Track:
    """`stream`'s packets, bytes untouched, moved `shift` seconds earlier and retargeted to the output stream
    `into`; packets starting at or after `until` seconds (on the shifted timeline) are dropped. A packet that claims
    no duration (a browser's MediaRecorder WebM's) is given the one timeline.lasts_for reads into it, up to the next
    packet's time: the muxer took a picture of such packets to end where its last frame starts, and tagged it so."""
    ticks = round(shift / stream.time_base)
    held, before = None, None  # a packet that claims no duration, until the next one's time; the time before it
    for packet in _read(source, source.demux(stream)):
        if packet.size == 0 or packet.pts is None:  # demuxer's end-of-stream marker
            continue
        if float((packet.pts - ticks) * stream.time_base) >= until:
            continue
        packet.pts -= ticks
        if packet.dts is not None:
            packet.dts -= ticks
        packet.stream = into
        if held is not None:
            yield _lasting(held, packet.pts - held.pts)
            before, held = held.pts, None
        if packet.duration:
            before = packet.pts
            yield packet
        else:
            held = packet
    if held is not None:
        tick = Fraction(stream.time_base)
        lasts = lasts_for(0, None if before is None else (held.pts - before) * tick, stream_rate(stream))
        yield _lasting(held, round(lasts / tick))


def _lasting(packet: av.Packet, ticks: int) -> av.Packet:
    """`packet`, lasting `ticks` of its clock where that is a length (packets in decode order, with B-frames, are
    not each on screen until the next: they keep claiming none)."""
    if ticks > 0:
        packet.duration = ticks
    return packet


def decoded(
    source: av.container.InputContainer, stream: av.stream.Stream, shift: float, until: float
) -> Iterator[av.frame.Frame]:
    """`stream`'s frames moved `shift` seconds earlier, up to `until` seconds, ready for an encoder: video keeps
    its time base (variable frame rates survive), audio is re-stamped in 1/sample_rate like `audio_frames` and cut
    to the sample at `until` (a decoder's frames run up to ~128 ms past a sound's end: an AAC source's last frame
    holds its padding, which an encoder would otherwise keep past the picture). Audio frames are placed as
    read_audio places them (decode._placed): one stamped within its clock's rounding of where the sound so far ends
    follows it, and a gap in the sound is filled with silence, so a player counting samples stays in sync."""
    ticks = round(shift / stream.time_base)
    position = None  # audio: the sample where the frames so far end
    for frame in _read(source, source.decode(stream)):
        if frame.pts is None or float((frame.pts - ticks) * stream.time_base) >= until:
            continue
        if isinstance(frame, av.AudioFrame):
            start = round((frame.pts - ticks) * stream.time_base * frame.sample_rate)
            if position is not None and abs(start - position) <= frame.sample_rate * stream.time_base + 1:
                start = position  # a timestamp rounded to the stream's clock (1 ms in Matroska)
            elif position is not None and start > position:
                yield from _silence(frame, position, start)
            frame = _cut(frame, start, until)
            position = start + frame.samples
        else:
            frame.pts -= ticks
            frame.time_base = stream.time_base
            frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose keyframes
        yield frame


def _read(source: av.container.InputContainer, items: Iterator) -> Iterator:
    """`items`, the packets or frames of `source` being read; an FFmpeg error while reading them names `source`
    (open_output takes every other error inside it, an encoder's or the muxer's, for the output's)."""
    try:
        yield from items
    except av.error.FFmpegError as e:
        raise cannot_read(source.name, f"not a readable media file or damaged ({e.strerror or e})") from e


def _silence(like: av.AudioFrame, start: int, end: int) -> Iterator[av.AudioFrame]:
    """Silent frames in `like`'s format, layout and rate from sample `start` to `end` of the timeline, stamped so
    (time base 1/sample_rate), at most AUDIO_CHUNK samples each."""
    for first in range(start, end, AUDIO_CHUNK):
        frame = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=min(AUDIO_CHUNK, end - first))
        for plane in frame.planes:  # unsigned 8-bit samples are silent at 128
            plane.update((b"\x80" if like.format.name.startswith("u8") else b"\0") * plane.buffer_size)
        frame.sample_rate, frame.pts, frame.time_base = like.sample_rate, first, Fraction(1, like.sample_rate)
        yield frame


def _cut(frame: av.AudioFrame, start: int, until: float) -> av.AudioFrame:
    """`frame`, whose first sample is sample `start` of the timeline, stamped so (time base 1/sample_rate) and
    without its samples at or after `until` seconds."""
    keep = frame.samples if until == math.inf else min(frame.samples, math.ceil(until * frame.sample_rate) - start)
    if keep < frame.samples:
        frame = audio_frame(frame_array(frame)[:, :keep], like=frame)
    frame.pts, frame.time_base = start, Fraction(1, frame.sample_rate)
    return frame


def mux(container: av.container.OutputContainer, *tracks: Track) -> None:
    """Write the tracks' packets interleaved by decode time, as players and streaming expect."""
    for packet in heapq.merge(*tracks, key=_decode_time):
        container.mux(packet)


def _decode_time(packet: av.Packet) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None else 0.0


@contextmanager
def open_output(temp: Path, target: Path, sample_rate: int | None = None) -> Iterator[av.container.OutputContainer]:
    """An output container on the temporary file `temp`; FFmpeg errors (an encoder's, the muxer's) become a
    MediaError naming `target` (a source read meanwhile names itself: copied, decoded).
    MP4s are written "faststart" (index first) so browsers can play them while downloading. An MP4 holding sound
    at `sample_rate` counts its movie time (edit lists: where the sound ends) in samples, not the default
    milliseconds, so the sound read back is as long as written to the sample (at 48 kHz it was up to 24 off)."""
    options = {}
    if temp.suffix.lower() in (".mp4", ".m4a", ".mov"):
        options = {"movflags": "+faststart", **({"movie_timescale": str(sample_rate)} if sample_rate else {})}
    try:
        with av.open(str(temp), "w", options=options) as container:
            yield container
    except av.error.FFmpegError as e:
        if isinstance(e, OSError) and (failure := failure_writing(target, e, temp)) is not e:
            raise failure from e
        raise MediaError(f"cannot write {target}: {e.strerror or e}") from e
