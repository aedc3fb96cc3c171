"""Decode any video or audio file into the model's clip format: frames at a fixed fps and size, mono audio at a
fixed sample rate, both measured from the same time origin so they stay in sync.

Frames are chosen by timestamp, not by counting: output frame k is the source frame on screen at time
start + k/fps. That is right for variable-frame-rate phone clips and for any source/target rate ratio.

A file's timestamps and header durations are claims; what bounds the work is what is decoded. Both readers
stream the file, and no buffer is sized from a claimed duration. A frame on screen, or a gap in the sound, longer
than MAX_GAP seconds is not believed: the file is refused (MediaError, exit 2) as soon as that frame is met,
before anything is allocated for it; so a file cannot claim more than MAX_GAP seconds per frame or packet it
really holds.

Memory bound: each picture is fitted to the model's size inside FFmpeg as it is decoded (mmgen.media.fitting),
so only model-size frames ever reach Python. read_video's peak RSS growth is 5·T·3·H·W bytes for the T frames
it returns (uint8 frames while decoding, then the float32 (T, 3, H, W) tensor: 1.25× the result), plus a
constant that does not grow with the input's length: the decoder's few pictures in flight at the source's size
(about 15 MB for 720p on 2 cores, more with more decoding threads). Measured on a 10-minute 640×360 30 fps
clip read at 10 fps, 64×64: 353 MiB for a 281 MiB result (tests/test_media_memory.py checks 5 bytes/pixel).
read_audio holds the samples of the input's real length about once (one buffer grown in place, _joined).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator

import av
import numpy as np
import torch

from mmgen.media.fitting import FrameFitter
from mmgen.media.frame_arrays import frame_array
from mmgen.media.notes import note
from mmgen.media.probe import MAX_CHANNELS, cannot_read, first_stream, open_input, pixel_aspect
from mmgen.media.timeline import declared_end, last_frame_end, origin
from mmgen.media.tracks import encoder_refusal

TRUNCATION_SLACK = 0.05  # seconds of audio that may be missing before a file counts as cut short
PRE_ROLL = 0.2  # seconds decoded before a seek target, so decoders (AAC needs one frame) are warmed up there
MAX_GAP = 60.0  # seconds one video frame may stay on screen, or the sound may pause between packets
MAX_KEPT_CHANNELS = 8  # the most a retake keeps as they are (kept_layout); more are mixed to mono
# Float audio may go past full scale (±1); a peak this far past it (+60 dBFS) is not a sound but a damaged file or
# integer samples stored as floats, and AAC cannot even encode it. Up to it the sound is read as it is: a loudness
# target turns it down unclipped, a float file keeps it; the model is given it clipped (within_full_scale), with a
# note past HOT_PEAK (+6 dBFS, more than any decoder's overshoot).
MAX_PEAK = 1000.0
HOT_PEAK = 2.0


def read_video(
    path: str | os.PathLike,
    fps: float,
    size: tuple[int, int],
    start: float = 0.0,
    duration: float | None = None,
    fit: str = "crop",
) -> torch.Tensor:
    """Frames of `path` from `start` for `duration` seconds (to the end if None), resampled to `fps` and
    `size` = (height, width). Returns (T, 3, H, W) float in [-1, 1].

    The picture is fitted to the target aspect by `fit` ("crop" the centre, or "pad" with black), resized
    bicubic with antialiasing and turned upright inside FFmpeg (mmgen.media.fitting), as each frame is decoded;
    anamorphic pictures (non-square pixels) are fitted as they are shown.
    """
    frames = _read_frames(path, fps, size, start, duration, fit, lambda k: True)
    return _as_video(frames, size)


def read_video_spans(
    path: str | os.PathLike, fps: float, size: tuple[int, int], spans: list[tuple[int, int]], start: float = 0.0
) -> list[torch.Tensor]:
    """Frames [a, b) of each of `spans` (counted from `start`, each cut at the video's end), each frame the one
    `read_video` gives there: what a sound retake's windows see of a long video, without the rest of it in memory
    (all of it is decoded all the same, so each frame is found as `read_video` finds it)."""
    frames = _read_frames(path, fps, size, start, None, "crop", lambda k: any(a <= k < b for a, b in spans))
    return [_as_video(frames[max(0, a) : b], size) for a, b in spans]


def _read_frames(
    path: str | os.PathLike,
    fps: float,
    size: tuple[int, int],
    start: float,
    duration: float | None,
    fit: str,
    wanted: Callable[[int], bool],
) -> list[torch.Tensor | None]:
    """`read_video`'s frames, each (3, H, W) uint8 where `wanted` (its index), else None (never converted)."""
    with open_input(path) as container:
        stream = first_stream(container, "video", path)
        fitter = FrameFitter((int(size[0]), int(size[1])), fit, pixel_aspect(stream))
        stream.thread_type = "AUTO"
        t0 = origin(container) + start
        _seek(container, stream, t0)
        frames: list[torch.Tensor | None] = []
        last, image = None, None
        shown = _frames_shown_at(container.decode(stream), t0, fps, duration, path,
                                 lambda t, claimed, before: last_frame_end(container, stream, t, claimed, before))
        for frame in shown:
            if frame is not last:  # a frame shown for several targets is converted once
                last, image = frame, None
            if image is None and wanted(len(frames)):
                image = fitter(frame)
            frames.append(image if wanted(len(frames)) else None)
        end = t0 + (duration if duration is not None else math.inf)
        _check_complete(
            path, "video", len(frames) / fps, declared_end(container, stream), t0, end, 1.5 / fps
        )
    if not frames:
        raise cannot_read(
            path, f"no video frames from {start:g} s on" if start else "the video has no frames"
        )
    return frames


def _as_video(frames: list[torch.Tensor | None], size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) float32 in [-1, 1] from uint8 frames, filled without a uint8 stack."""
    shape = next((image.shape for image in frames if image is not None), (3, int(size[0]), int(size[1])))
    video = torch.empty(len(frames), *shape)
    for k, image in enumerate(frames):
        video[k] = image
    return video.div_(127.5).sub_(1)


def mixable_channels(path: str | os.PathLike, stream: av.audio.stream.AudioStream, into: str) -> int:
    """How many channels `path`'s audio `stream` has, when FFmpeg's resampler can mix them `into` fewer (mono,
    stereo); MediaError naming the file up front when there are more than MAX_CHANNELS: the resampler would stop at
    its first frame with "Invalid argument"."""
    channels = stream.codec_context.channels
    if channels > MAX_CHANNELS:
        raise cannot_read(path, f"its audio has {channels} channels, more than the {MAX_CHANNELS} FFmpeg's resampler "
                          f"mixes to {into}")
    return channels


def mixes_to_stereo(stream: av.audio.stream.AudioStream) -> bool:
    """Whether FFmpeg's resampler mixes `stream`'s channels to stereo (what an encoder given more than two does): it
    does for any layout it knows, and for channels with none when their count has a usual layout (3, 6, 10, 16,
    24 …), not for 9, 32 or 63 of them ("Invalid argument" at the first frame). Found by mixing a silent frame."""
    silence = av.AudioFrame(format="flt", layout=stream.codec_context.layout, samples=1)
    silence.sample_rate = stream.codec_context.sample_rate or 48_000
    silence.planes[0].update(bytes(silence.planes[0].buffer_size))
    try:
        av.AudioResampler(format="flt", layout="stereo").resample(silence)
    except av.error.FFmpegError:
        return False
    return True


def mean_mixed(frames: Iterable[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """`frames` mixed to mono, each sample the mean of its channels (as read_audio mixes), keeping their pts,
    time base and rate: for channels FFmpeg cannot mix to stereo (mixes_to_stereo)."""
    resampler = None
    for frame in frames:
        resampler = resampler or av.AudioResampler(format="flt", rate=frame.sample_rate)  # packed floats, as they are
        samples = np.concatenate([frame_array(f).T.reshape(-1) for f in resampler.resample(frame)])
        mono = channel_mean(samples, len(frame.layout.channels))
        out = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono[None]), format="flt", layout="mono")
        out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
        yield out


def channel_mean(interleaved: np.ndarray, channels: int) -> np.ndarray:
    """Samples of `channels` channels, interleaved (n·channels,), mixed to mono (n,): each sample the mean of its
    channels, in float32 — how mmgen mixes sound to mono wherever it does (read_audio, mean_mixed)."""
    return interleaved.reshape(-1, channels).mean(axis=1, dtype=np.float32)


def kept_layout(path: str | os.PathLike, encoder: str) -> str | None:
    """The channel layout of `path`'s audio when its channels can be kept as they are (a retake's sound outside the
    ranges): 1 to MAX_KEPT_CHANNELS channels in a layout FFmpeg names (mono, stereo, 5.1 …; "N channels" in no
    known order are taken in FFmpeg's default layout for N, as `ffmpeg` and its resampler guess it: 8 are 7.1)
    that `encoder` takes; None when not (the sound is then read mixed to mono)."""
    with open_input(path) as container:
        layout = first_stream(container, "audio", path).codec_context.layout
    count, name = len(layout.channels), layout.name
    if not 1 <= count <= MAX_KEPT_CHANNELS:
        return None
    if name.endswith("channels"):  # no order stored (a Matroska or WAV PCM track's, mmgen's own 7.1 PCM .mkv too)
        name = av.AudioLayout(f"{count}c").name  # "8c": FFmpeg's default for the count (av_channel_layout_default)
    sample_format = next(iter(av.Codec(encoder, "w").audio_formats or ()), None) or "flt"
    return None if encoder_refusal(encoder, sample_rate=48_000, layout=name, format=sample_format) else name


def read_audio(
    path: str | os.PathLike,
    sample_rate: int,
    start: float = 0.0,
    duration: float | None = None,
    layout: str | None = None,
    heard_by_model: bool = False,
) -> torch.Tensor:
    """Audio of `path` from `start` for `duration` seconds (to the end if None), resampled to `sample_rate`
    (libswresample) and mixed to mono. Returns (1, L) float in [-1, 1]; gaps in the source are silence. Given
    `layout` (its own, kept_layout's), its channels are kept instead: (C, L), in the layout's order. Float samples
    past full scale are kept as they are (within_full_scale clips them for the model).

    Mono is the mean of the channels, not the first channel as the official code takes: a sound panned to one
    side of a stereo recording should still be heard. More than MAX_CHANNELS channels, and float samples that are
    NaN, Inf or beyond MAX_PEAK, refuse the file (MediaError naming it). `heard_by_model`: the sound is a model's
    input, mixed to mono for it (here, or by the caller given its `layout`: a retake's), and its note on surround
    says so (the output's own sound keeps its channels, or says so where it does not).
    """
    with open_input(path) as container:
        stream = first_stream(container, "audio", path)
        channels = mixable_channels(path, stream, "mono")
        if channels > 2 and (layout is None or heard_by_model):  # a model's input given `layout` is mixed by its caller
            if heard_by_model:
                note(path, f"the model hears its {channels}-channel audio mixed to mono",
                     "surround audio mixed to mono for the model")
            else:
                note(path, f"its {channels}-channel audio is mixed to mono", "surround audio mixed to mono")
        t0 = origin(container) + start
        _seek(container, stream, t0)
        # Packed "flt": any sample format as floats, the source's channels interleaved as _placed joins them.
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)  # None: its own layout
        decoded = container.decode(stream)
        until = None if duration is None else t0 + duration
        # A frame's timestamp is rounded to the stream's clock (1 ms in Matroska/WebM: 48 samples at 48 kHz).
        jitter = sample_rate * float(stream.time_base or 0) + 1
        width = len(av.AudioLayout(layout).channels) if layout else 1  # channels returned
        audio = _joined(_placed(_resampled(decoded, resampler, until), t0, sample_rate, path, jitter, width), width)
        declared = declared_end(container, stream)
    length = len(audio) // width  # samples per channel (`audio` holds them interleaved)
    if declared is not None:  # drop the encoder's padding after the last real sample
        length = min(length, round((declared - t0) * sample_rate))
        end = t0 + (duration if duration is not None else math.inf)
        _check_complete(path, "audio", length / sample_rate, declared, t0, end, TRUNCATION_SLACK)
    if duration is not None:
        length = min(length, round(duration * sample_rate))
    if length <= 0:
        raise cannot_read(path, f"no audio from {start:g} s on" if start else "the audio stream is empty")
    audio.resize(length * width, refcheck=False)  # in place: no view of it exists yet
    if width == 1:
        return torch.from_numpy(audio)[None]  # (1, L)
    return torch.from_numpy(audio.reshape(length, width).T.copy())  # (C, L) from interleaved


def within_full_scale(audio: torch.Tensor, path: str | os.PathLike) -> torch.Tensor:
    """`path`'s sound as read_audio reads it, clipped to ±1 for the model (trained on sound within full scale),
    with a note giving its real peak past HOT_PEAK."""
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak > HOT_PEAK:
        note(path, f"its audio peaks at {20 * math.log10(peak):+.1f} dBFS, above full scale; the model is given it "
             "clipped to full scale", "audio above full scale, clipped to it for the model")
    return audio.clamp(-1, 1)


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, t: float) -> None:
    """Jump to the keyframe at or before PRE_ROLL ahead of time `t` (decoding from the start gives the same
    result, only slower: what comes before `t` is dropped by timestamp)."""
    if t > PRE_ROLL:
        container.seek(int((t - PRE_ROLL) / stream.time_base), stream=stream, backward=True, any_frame=False)


def _frames_shown_at(
    frames: Iterator[av.VideoFrame],
    t0: float,
    fps: float,
    duration: float | None,
    path: str | os.PathLike,
    last_end: Callable[[float, float, float | None], float],
) -> Iterator[av.VideoFrame]:
    """Yield, for k = 0, 1, ..., the frame on screen at t0 + k/fps, while that time is inside the source and
    before t0 + duration; before the first frame, the first frame. Timestamps are rounded to ticks, so a frame
    stamped up to half a tick (at most 1 ms) after a target counts as on screen there. The source ends where
    `last_end`(start, claimed duration, the start of the frame before) of its latest frame says
    (timeline.last_frame_end). A frame that would
    stay on screen longer than MAX_GAP is refused before it is repeated."""
    count = math.inf if duration is None else math.ceil(duration * fps - 1e-6)
    k, shown, latest, previous, claimed, eps = 0, None, -math.inf, -math.inf, 0.0, 1e-3
    for frame in frames:
        if frame.pts is None:
            continue
        t = float(frame.pts * frame.time_base)
        eps = min(float(frame.time_base) / 2, 1e-3)
        before = shown if shown is not None else frame
        _check_gap(path, "video", t0 + k / fps, min(t - eps, t0 + count / fps))
        while k < count and t0 + k / fps < t - eps:
            yield before
            k += 1
        if k >= count:
            return
        shown = frame
        if t > latest:
            previous, latest = latest, t
        elif previous < t < latest:
            previous = t
        if t >= latest:
            claimed = float(frame.duration * frame.time_base) if frame.duration else 0.0
    end = last_end(latest, claimed, previous if previous > -math.inf else None) if shown is not None else -math.inf
    _check_gap(path, "video", t0 + k / fps, min(end - eps, t0 + count / fps))
    while shown is not None and k < count and t0 + k / fps < end - eps:
        yield shown
        k += 1


def _check_gap(path: str | os.PathLike, kind: str, start: float, end: float) -> None:
    """Refuse a file whose timestamps leave `start`..`end` (seconds) without a new video frame or a sound packet
    for longer than MAX_GAP: a claim no real recording makes, and one that would cost work without data."""
    if end - start > MAX_GAP:
        raise cannot_read(
            path, f"its {kind} timestamps jump from {start:.2f} s to {end:.2f} s with nothing in between "
            f"(more than {MAX_GAP:g} s): the file claims a duration its data does not have"
        )


def _check_samples(path: str | os.PathLike, samples: np.ndarray) -> None:
    """Refuse float audio no sound has (NaN, Inf, beyond MAX_PEAK) where it is decoded, naming the file, so
    the model (NaN in, NaN out) or an encoder is not blamed for it later."""
    peak = np.abs(samples).max(initial=0.0)  # NaN if any sample is NaN
    if not np.isfinite(peak):
        raise cannot_read(path, "its audio holds NaN or Inf samples")
    if peak > MAX_PEAK:
        raise cannot_read(
            path, f"its audio peaks at {20 * math.log10(peak):+.0f} dBFS ({peak:.3g} times full scale), which no "
            "sound does: float samples belong within about ±1 (integer samples stored as floats?)"
        )


def _check_complete(
    path: str | os.PathLike,
    kind: str,
    got: float,
    declared_end: float | None,
    t0: float,
    end: float,
    slack: float,
) -> None:
    """A file whose data stops well before the end its header declares was cut short (an interrupted copy or
    download of a "faststart" mp4 still opens, so this is the only sign)."""
    if declared_end is None or got + slack >= min(declared_end, end) - t0:
        return
    raise cannot_read(
        path, f"the file is cut short: its {kind} stops at {t0 + got:.2f} s of {declared_end:.2f} s"
    )


def _resampled(
    frames: Iterator[av.AudioFrame], resampler: av.AudioResampler, until: float | None
) -> Iterator[av.AudioFrame]:
    """Resampled frames, flushed at the end; stops reading once a frame starts after `until` seconds."""
    for frame in frames:
        if until is not None and frame.pts is not None and frame.pts * frame.time_base > until:
            break
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def _joined(pieces: Iterable[tuple[int, np.ndarray]], width: int = 1) -> np.ndarray:
    """The (offset, samples) pieces written into one buffer as they come, a later piece over an earlier one where
    they overlap; where none reaches is silence, and what lies before offset 0 is dropped. The buffer grows in
    place by an eighth at a time (ndarray.resize: realloc, which for a large block remaps its pages rather than
    copying them), so the sound is held about once: not as a list of frames and then their concatenation.
    Samples of `width` channels come interleaved, offsets counted in samples of all of them: so is the buffer."""
    audio, end = np.zeros(0, np.float32), 0
    for offset, samples in pieces:
        lo, hi = max(offset, 0) * width, offset * width + len(samples)
        if hi > len(audio):  # new entries are zeros: silence until a piece lands there
            audio.resize(max(hi, len(audio) + len(audio) // 8), refcheck=False)  # no view of it is kept
        if lo < hi:
            audio[lo:hi] = samples[lo - offset * width :]
        end = max(end, hi)
    audio.resize(end, refcheck=False)
    return audio


def _placed(
    frames: Iterator[av.AudioFrame],
    t0: float,
    sample_rate: int,
    path: str | os.PathLike,
    jitter: float,
    width: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """(offset in samples from t0, mono samples) for each frame, placed by its timestamp; a frame without one,
    or stamped within `jitter` samples (its clock's rounding) of where the previous frame ends, follows that
    frame, so rounded timestamps leave neither gaps nor overlaps. A gap of more than MAX_GAP before a frame is
    refused. `width` > 1: the frame's own channels, interleaved, instead of mono."""
    position = None
    for frame in frames:
        if frame.pts is not None:
            heard = max(position or 0, 0)  # where the sound so far ends
            stamped = round((float(frame.pts * frame.time_base) - t0) * sample_rate)
            if position is None or abs(stamped - position) > jitter:
                position = stamped
            _check_gap(path, "audio", heard / sample_rate + t0, position / sample_rate + t0)
        elif position is None:
            position = 0
        channels = len(frame.layout.channels)
        interleaved = frame_array(frame).T.reshape(-1)  # (n·channels,)
        _check_samples(path, interleaved)
        yield position, (channel_mean(interleaved, channels) if width == 1 else interleaved)  # (n,) or (n·channels,)
        position += len(interleaved) // channels
