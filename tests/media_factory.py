"""Write small, real media files with PyAV for tests, with content a test can check afterwards.

Every frame has a horizontal red ramp, a vertical green ramp and a flat blue level that encodes its index
(`frame_level(k)`), so a test can tell which source frame it decoded. Audio is a quiet tone, one frequency per
channel (`tone_hz * (c + 1)`). A "flash" is an all-white frame and a "click" a 1 ms full-scale burst, placed at
known times for timing checks. Codec and container follow the file's suffix unless given.

The read-back helpers at the end (`packets`, `decode_audio`, `decode_frames`, ...) look at what a file holds
with PyAV alone, so tests judge mmgen's outputs without going through mmgen's own decoders.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

VIDEO_ENCODERS = {
    "h264": "libx264",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "mpeg4": "mpeg4",
    "prores": "prores_ks",
}
PIXEL_FORMATS = {"prores_ks": "yuv422p10le", "png": "rgb24"}
# Fast settings that keep B-frames (so reordering and edit lists are exercised); x265 is quiet.
ENCODER_OPTIONS = {
    "libx264": {"preset": "veryfast"},
    "libx265": {"x265-params": "log-level=error"},
    "mpeg4": {"b": "2000k"},  # its default 200 kb/s blurs flat colours by several levels
}
AUDIO_FOR_SUFFIX = {
    ".avi": "pcm_s16le",
    ".webm": "libopus",
    ".wav": "pcm_s16le",
    ".flac": "flac",
    ".mp3": "libmp3lame",
}
# what a muxer writing to a pipe is told the file is (it cannot be guessed from a name)
PIPED_FORMATS = {".mkv": "matroska", ".mka": "matroska", ".webm": "webm", ".flac": "flac"}
TONE_AMPLITUDE = 0.1
CLICK_SECONDS = 0.001


@dataclass(frozen=True)
class WrittenClip:
    """What was written: the exact pixels and samples handed to the encoders (before lossy coding)."""

    path: Path
    fps: float | None
    sample_rate: int | None
    frames: np.ndarray | None  # (T, H, W, 3) uint8
    audio: np.ndarray | None  # (C, L) float32
    frame_times: list[float] | None  # presentation time of each frame, seconds


def encoder_available(codec: str) -> bool:
    try:
        av.Codec(VIDEO_ENCODERS.get(codec, codec), "w")
    except Exception:
        return False
    return True


def frame_level(k: int) -> int:
    """The flat blue value of frame k (steps of 8 so lossy coding cannot confuse neighbours; wraps at 28)."""
    return 16 + 8 * (k % 28)


def pattern_frame(k: int, size: tuple[int, int]) -> np.ndarray:
    """Frame k as (H, W, 3) uint8: red ramp left→right, green ramp top→bottom, blue = frame_level(k)."""
    h, w = size
    frame = np.empty((h, w, 3), np.uint8)
    frame[..., 0] = np.linspace(0, 255, w, dtype=np.float32).round().astype(np.uint8)[None, :]
    frame[..., 1] = np.linspace(0, 255, h, dtype=np.float32).round().astype(np.uint8)[:, None]
    frame[..., 2] = frame_level(k)
    return frame


def pattern_audio(
    seconds: float, sample_rate: int, tone_hz: float = 440.0, channels: int = 1, click_at: float | None = None
) -> np.ndarray:
    """(C, L) float32: a quiet tone per channel, plus a click on every channel at `click_at` seconds."""
    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    audio = np.stack([TONE_AMPLITUDE * np.sin(2 * np.pi * tone_hz * (c + 1) * t) for c in range(channels)])
    if click_at is not None:
        start = round(click_at * sample_rate)
        audio[:, start : start + max(1, round(CLICK_SECONDS * sample_rate))] = 0.9
    return audio.astype(np.float32)


def write_test_video(
    path: str | Path,
    seconds: float = 1.6,
    fps: float = 10,
    size: tuple[int, int] = (64, 64),
    codec: str = "h264",
    audio: bool = True,
    *,
    sample_rate: int = 16000,
    tone_hz: float = 440.0,
    channels: int = 1,
    audio_codec: str | None = None,
    flash_at: float | None = None,
    click_at: float | None = None,
    rotation: int = 0,
    frame_times: list[float] | None = None,
    pixel_aspect: Fraction | None = None,
    audio_seconds: float | None = None,
    time_base: Fraction | None = None,
    samples: np.ndarray | None = None,
    sample_format: str | None = None,
    piped: bool = False,
) -> WrittenClip:
    """A clip of `seconds` at `fps`, `size` = (height, width). `frame_times` (seconds, increasing) makes a
    variable-frame-rate clip instead (timestamps in milliseconds). `seconds=0` writes a video stream with no
    frames. `rotation` stores a display matrix (counter-clockwise degrees); `pixel_aspect` a sample aspect ratio
    (anamorphic pixels: shown that many times as wide as tall). `audio_seconds` makes the sound last longer or
    shorter than the picture. `time_base` sets the encoder's clock (frame times are rounded to it). `samples`
    (C, L) float are written as the sound instead of the tone (e.g. with NaN in them, as a `pcm_f32le` track).
    `sample_format` is the sound encoder's (FLAC's "s32": a 24-bit FLAC). `piped`: written as to a pipe (open_written)."""
    path = Path(path)
    times = frame_times if frame_times is not None else [k / fps for k in range(round(seconds * fps))]
    frames = (
        np.stack([pattern_frame(k, size) for k in range(len(times))])
        if times
        else np.zeros((0, *size, 3), np.uint8)
    )
    if flash_at is not None:
        frames[round(flash_at * fps)] = 255
    sound = pattern_audio(seconds if audio_seconds is None else audio_seconds, sample_rate, tone_hz, channels, click_at) if audio else None
    if samples is not None:
        sound, channels = samples, samples.shape[0]
    if time_base is None:
        time_base = Fraction(1, 1000) if frame_times is not None else Fraction(fps).limit_denominator(1001) ** -1

    with open_written(path, piped) as container:
        video_stream = container.add_stream(VIDEO_ENCODERS.get(codec, codec), rate=1 / time_base)
        video_stream.height, video_stream.width = size
        video_stream.pix_fmt = PIXEL_FORMATS.get(video_stream.codec_context.name, "yuv420p")
        video_stream.codec_context.time_base = time_base
        video_stream.options = ENCODER_OPTIONS.get(video_stream.codec_context.name, {})
        if rotation:
            video_stream.set_display_rotation(rotation)
        if pixel_aspect is not None:
            video_stream.codec_context.sample_aspect_ratio = pixel_aspect
        if sound is not None:
            audio_stream = container.add_stream(
                audio_codec or AUDIO_FOR_SUFFIX.get(path.suffix, "aac"),
                rate=sample_rate,
                layout=_layout(channels),
            )
            if sample_format is not None:
                audio_stream.format = sample_format
        packets = []
        for k, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frames[k], format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            packets += video_stream.encode(frame)
        packets += video_stream.encode(None)
        if sound is not None:
            packets += _encode_audio(audio_stream, sound, sample_rate)
        # Interleaved by time, as real files are (AVI derives timestamps from the interleaving).
        container.start_encoding()
        container.mux(sorted(packets, key=lambda p: p.dts * p.time_base))
    return WrittenClip(
        path, fps if frame_times is None else None, sample_rate if audio else None, frames, sound, times
    )


class _Pipe(io.RawIOBase):
    """A file written only forwards, as a pipe is."""

    def __init__(self, file: io.BufferedWriter):
        self.file = file

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self.file.write(data)


@contextmanager
def open_written(path: Path, piped: bool = False) -> Iterator[av.container.OutputContainer]:
    """`path` opened for writing; `piped`, written only forwards, as `ffmpeg ... -f flac - > file` or a browser's
    MediaRecorder writes (a format in PIPED_FORMATS): the muxer cannot go back to its header, so it declares no
    length (a FLAC's STREAMINFO counts 0 samples; a Matroska/WebM holds no duration and no DURATION tags)."""
    if not piped:
        with av.open(str(path), "w") as container:
            yield container
        return
    with path.open("wb") as file, av.open(_Pipe(file), "w", format=PIPED_FORMATS[path.suffix]) as container:
        yield container


def write_many_streams(path: str | Path, videos: int, audios: int, seconds: float = 0.5) -> Path:
    """A clip with several video and audio streams (as a film with a second angle and commentary): pattern frames
    at 10 fps, 16×16, in each video stream, and in audio stream s a tone of 440·(s+1) Hz, 16 kHz."""
    with av.open(str(path), "w") as container:
        pictures = [container.add_stream("libx264", rate=10) for _ in range(videos)]
        for stream in pictures:
            stream.height = stream.width = 16
            stream.pix_fmt = "yuv420p"
        sounds = [container.add_stream("aac", rate=16000, layout="mono") for _ in range(audios)]
        packets = []
        for stream in pictures:
            for k in range(round(seconds * 10)):
                frame = av.VideoFrame.from_ndarray(pattern_frame(k, (16, 16)), format="rgb24")
                frame.pts = k
                packets += stream.encode(frame)
            packets += stream.encode(None)
        for s, stream in enumerate(sounds):
            packets += _encode_audio(stream, pattern_audio(seconds, 16000, 440.0 * (s + 1)), 16000)
        container.start_encoding()
        container.mux(sorted(packets, key=lambda p: p.dts * p.time_base))
    return Path(path)


def write_long_video(path: str | Path, seconds: float, fps: float = 10, size: tuple[int, int] = (240, 320)) -> Path:
    """A video-only H.264 clip of pattern frames, encoded fast and streamed to the file as it is made, so minutes
    of it cost neither memory nor much time (one thread, `ultrafast`)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.codec_context.thread_count = 1
        first = pattern_frame(0, size)
        for k in range(round(seconds * fps)):
            first[..., 2] = frame_level(k)  # only the blue level changes from frame to frame
            frame = av.VideoFrame.from_ndarray(first, format="rgb24")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return Path(path)


def write_test_audio(
    path: str | Path,
    seconds: float = 1.6,
    sample_rate: int = 16000,
    *,
    tone_hz: float = 440.0,
    channels: int = 1,
    click_at: float | None = None,
    codec: str | None = None,
    samples: np.ndarray | None = None,
    piped: bool = False,
) -> WrittenClip:
    """An audio-only file (wav, m4a/mp4 AAC, mp3, flac, webm opus: by suffix unless `codec` is given); `samples`
    (C, L) float instead of the tone (e.g. a float wav, codec "pcm_f32le", holding NaN). `piped`: written as to a
    pipe (open_written)."""
    path = Path(path)
    sound = pattern_audio(seconds, sample_rate, tone_hz, channels, click_at) if samples is None else samples
    with open_written(path, piped) as container:
        stream = container.add_stream(
            codec or AUDIO_FOR_SUFFIX.get(path.suffix, "aac"), rate=sample_rate, layout=_layout(sound.shape[0])
        )
        if piped:
            container.start_encoding()  # the header first, as a pipe gets it: before the encoder counts its samples
        container.mux(_encode_audio(stream, sound, sample_rate))
    return WrittenClip(path, None, sample_rate, None, sound, None)


def write_test_wav(
    path: str | Path, seconds: float = 1.6, sample_rate: int = 16000, **options
) -> WrittenClip:
    """A 16-bit PCM wav file; options as write_test_audio."""
    return write_test_audio(path, seconds, sample_rate, codec="pcm_s16le", **options)


def write_late_streams(
    path: str | Path,
    video_start: float,
    audio_start: float,
    frames: int = 20,
    audio_seconds: float = 2.0,
    *,
    fps: int = 10,
    size: tuple[int, int] = (16, 16),
    audio_codec: str = "aac",
    sample_rate: int = 48000,
    mkvmerge_tags: bool = False,
) -> WrittenClip:
    """A clip whose picture starts at `video_start` and sound at `audio_start` seconds on the file's timeline (a
    camera's sound running before its picture, a delayed sound): `frames` H.264 frames at `fps` and a tone, each
    stamped from its own start, in the container `path`'s suffix names. `mkvmerge_tags` (Matroska): each track's
    DURATION tag as mkvmerge writes it for a track in no language — plain "DURATION", holding the track's length
    (last end minus first time), beside its statistics tags — and not FFmpeg's (where the track ends: the file is
    written as a live stream, for which FFmpeg writes none)."""
    path = Path(path)
    pictures = np.stack([pattern_frame(k, size) for k in range(frames)])
    sound = pattern_audio(audio_seconds, sample_rate)
    with av.open(str(path), "w", options={"live": "1"} if mkvmerge_tags else {}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.height, video.width = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        audio = container.add_stream(audio_codec, rate=sample_rate, layout="mono")
        packets = []
        for k, pixels in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = k + round(video_start * fps), Fraction(1, fps)
            packets += video.encode(frame)
        packets += video.encode(None)
        packets += _encode_audio(audio, sound, sample_rate, round(audio_start * sample_rate))
        for stream in (video, audio) if mkvmerge_tags else ():
            own = [p for p in packets if p.stream is stream]
            # a frame's packet claims no duration before it is muxed: one tick of the picture's clock, one frame
            length = float(max((p.pts + (p.duration or 1)) * p.time_base for p in own)
                           - min(p.pts * p.time_base for p in own))
            stream.metadata.update({"DURATION-und": f"{int(length // 3600):02d}:{int(length // 60 % 60):02d}:"
                                                    f"{length % 60:012.9f}",  # read back as plain DURATION
                                    "_STATISTICS_WRITING_APP": "mkvmerge v80.0 ('Roundabout') 64-bit",
                                    "_STATISTICS_TAGS": "BPS DURATION NUMBER_OF_FRAMES NUMBER_OF_BYTES"})
        container.start_encoding()
        container.mux(sorted(packets, key=lambda p: p.dts * p.time_base))
    return WrittenClip(path, fps, sample_rate, pictures, sound, [video_start + k / fps for k in range(frames)])


def write_pcm_wav(path: Path, channels: int, rate: int = 16000, samples: int = 1600) -> Path:
    """A 16-bit PCM WAV of `channels` identical channels (a tone) and no channel layout, its header written by hand:
    no encoder writes 255 channels."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate) * 32767).astype("<i2")
    data = np.repeat(tone[:, None], channels, 1).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def write_wide_clip(path: Path, channels: int, seconds: float = 1.0, rate: int = 16000) -> Path:
    """A Matroska clip (`path`: .mkv) of a 16×16 picture at 10 fps over write_pcm_wav's sound of `channels`
    channels, its packets copied in: no PyAV encoder takes a layout of that many."""
    sound = write_pcm_wav(path.with_name(f"{path.stem}-sound.wav"), channels, rate, round(seconds * rate))
    picture = write_test_video(path.with_name(f"{path.stem}-picture.mp4"), seconds, size=(16, 16), audio=False).path
    with av.open(str(picture)) as video, av.open(str(sound)) as audio, av.open(str(path), "w") as out:
        streams = {video.streams.video[0]: out.add_stream_from_template(video.streams.video[0]),
                   audio.streams.audio[0]: out.add_stream_from_template(audio.streams.audio[0])}
        packets, sample = [], 0
        for packet in (*video.demux(video.streams.video[0]), *audio.demux(audio.streams.audio[0])):
            if not packet.size:
                continue
            if packet.stream.type == "audio":  # the WAV demuxer's packets carry no dts
                packet.pts = packet.dts = sample
                sample += packet.size // (2 * channels)
            packet.stream = streams[packet.stream]
            packets.append(packet)
        for packet in sorted(packets, key=lambda p: float((p.pts if p.dts is None else p.dts) * p.time_base)):
            out.mux(packet)
    return path


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[channels]


def _encode_audio(stream, sound: np.ndarray, sample_rate: int, first: int = 0) -> list[av.Packet]:
    """Encode (C, L) float samples in 1024-sample frames with explicit pts (from sample `first`), so AAC priming is
    recorded. Frames are packed (interleaved): PyAV 18's planar frames crash on 8 channels."""
    packets = []
    for start in range(0, sound.shape[1], 1024):
        chunk = np.ascontiguousarray(sound[:, start : start + 1024].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=_layout(sound.shape[0]))
        frame.sample_rate = sample_rate
        frame.pts = first + start
        frame.time_base = Fraction(1, sample_rate)
        packets += stream.encode(frame)
    return packets + stream.encode(None)


def as_video(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (T, 3, H, W) float in [-1, 1], mmgen's video layout."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def blue_levels(video: torch.Tensor) -> np.ndarray:
    """The mean blue value of each decoded frame (T, 3, H, W) in [-1, 1], on the 0..255 scale of frame_level."""
    return ((video[:, 2].mean(dim=(1, 2)) + 1) * 127.5).numpy()


def click_time(audio: torch.Tensor, sample_rate: int) -> float:
    """Seconds at which (1, L) audio is loudest: where the click is."""
    return int(audio.abs().argmax()) / sample_rate


def flash_frame(video: torch.Tensor) -> int:
    """Index of the brightest frame of (T, 3, H, W): the flash."""
    return int(video.mean(dim=(1, 2, 3)).argmax())


def packets(path: str | Path, kind: str) -> list[tuple[int, bytes]]:
    """(pts, payload) of every non-empty packet of the first `kind` ("video"/"audio") stream, in file order."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(packet.pts, bytes(packet)) for packet in container.demux(stream) if packet.size]


def stream_kinds(path: str | Path) -> list[str]:
    """The type of every stream in the file, in order: e.g. ["video", "audio"]."""
    with av.open(str(path)) as container:
        return [stream.type for stream in container.streams]


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The first audio stream decoded as (C, L) float32 and its sample rate (the decoder's own rate and
    channels; leading encoder priming is dropped as players drop it). Through packed float, as mmgen reads sound:
    PyAV 18's to_ndarray of a planar frame crashes (segfault) on 8 channels (7.1)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        as_float = av.AudioResampler(format="flt")  # any sample format → packed float, same rate and channels
        frames = [out.to_ndarray().reshape(-1)
                  for frame in container.decode(stream) for out in as_float.resample(frame)]
        frames += [out.to_ndarray().reshape(-1) for out in as_float.resample(None)]
        rate = stream.codec_context.sample_rate
    return np.concatenate(frames).reshape(-1, channels).T.copy(), rate  # (C, L) from interleaved


def decode_frames(path: str | Path) -> np.ndarray:
    """Every frame of the first video stream as (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


# How far two H.264 encodes of bitwise the same frames may decode apart, as a mean over every pixel and channel in
# 8-bit levels. libx264's macroblock-tree rate control (mbtree, on in its defaults) reads a stack variable it has not
# written (valgrind; only for pictures an odd number of macroblocks wide, as the demo's 16 px), so now and then a frame
# is coded differently (measured on the demo's 8 frames of 16×16, the heap filled with other data before each
# encode: 11 encodes in 800 with mbtree on, none in 400 with it off; the odd ones decode 0.6 and 1.7 levels off on
# average, 21 at most). Another seed is far off: 19.9 levels between the demo's clips of seeds 7 and 8, 95 between
# the tiny test model's.
ENCODE_LEVELS = 3.0


def frame_difference(a: str | Path, b: str | Path) -> float:
    """Mean absolute difference of two files' decoded frames, in 8-bit levels (compare with ENCODE_LEVELS)."""
    return float(np.abs(decode_frames(a).astype(np.int16) - decode_frames(b)).mean())


def audio_stream_seconds(path: str | Path) -> float:
    """How long the container says the first audio stream plays (an mp4 edit list's duration, priming excluded)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)
