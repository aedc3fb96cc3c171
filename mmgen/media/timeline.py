"""Where a file's streams start and end on its timeline, in seconds: as its headers say, its Matroska DURATION tags,
and, where neither says, its packets. Every read and remux measures time from `origin`, the way players do.
"""

from __future__ import annotations

import functools
import math
import os
import re
from fractions import Fraction
from numbers import Real

import av

from mmgen.media.notes import note

OPUS_RATE = 48_000  # Opus decodes at 48 kHz, whatever rate it was encoded from


def stream_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Seconds the stream lasts: a Matroska/WebM track's DURATION tag (tagged_length), else its own header duration
    (MP4/MOV, WAV, FLAC's STREAMINFO), else its packets' (packet_length), else the container's. A Matroska track's
    header holds no duration: FFmpeg, when it stops probing a longer file early, gives the track the segment's (which
    counts AAC's priming), so the tag comes first, unless the packets run on past it (tagged_length: then they are
    read to their end, as players play them); a track without one is not taken to last the segment (the longest
    stream's). A header that says nothing is no length of 0: a browser's MediaRecorder WebM, a live Matroska, a FLAC
    written to a pipe (0 samples in its STREAMINFO) declare none, and their packets say how long they are."""
    tagged = tagged_length(container, stream)
    if tagged is not None:
        return tagged
    if stream.duration:
        return float(stream.duration * stream.time_base)
    measured = packet_length(container, stream)
    if measured is not None:
        return measured
    if container.duration:
        return container.duration / av.time_base
    return None


def packet_length(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Seconds from the stream's start to the end of its last packet (its time plus its duration), from every packet
    of the file (demuxed, nothing decoded); None when none holds a time. Read once per file as it is (path, size,
    time written)."""
    try:
        stat = os.stat(container.name)
    except OSError:
        return None
    end = _packet_ends(container.name, stat.st_size, stat.st_mtime_ns).get(stream.index)
    return None if end is None else max(0.0, end - stream_start(container, stream))


@functools.lru_cache(maxsize=64)
def _packet_ends(path: str, size: int, written: int) -> dict[int, float]:
    """Where each stream's packets end, in seconds on the file's timeline, by stream index: the latest to start lasts
    what lasts_for says (a MediaRecorder WebM's claim nothing); as far as the file reads (a damaged one is said by
    the decode that follows)."""
    ends: dict[int, int] = {}  # in ticks of the stream's clock (exact: 1.9 s + 0.1 s is 2.0 s), as the packets
    latest: dict[int, tuple[int, int, int | None]] = {}  # index → (the last start, its claim, the start before it)
    clocks: dict[int, Fraction] = {}
    rates: dict[int, Fraction | None] = {}
    try:
        with av.open(path, metadata_errors="replace") as container:
            rates = {stream.index: stream_rate(stream) for stream in container.streams}
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                at, claimed, index = packet.pts, packet.duration or 0, packet.stream.index
                clocks[index] = packet.time_base
                ends[index] = max(at + claimed, ends.get(index, at + claimed))
                last, its, before = latest.get(index, (None, 0, None))
                if last is None or at > last:
                    latest[index] = (at, claimed, last)
                elif at == last:
                    latest[index] = (at, max(its, claimed), before)
                elif before is None or at > before:
                    latest[index] = (last, its, at)
    except av.error.FFmpegError:
        pass
    found = {}
    for index, (last, claimed, before) in latest.items():
        tick = Fraction(clocks[index])
        lasts = lasts_for(claimed * tick, None if before is None else (last - before) * tick, rates.get(index))
        found[index] = float(max(ends[index] * tick, last * tick + lasts))
    return found


def stream_rate(stream: av.stream.Stream) -> Fraction | None:
    """A video stream's frame rate as FFmpeg has it (for a Matroska track that states none, its guess: from a
    single frame, its clock's, 1000 fps); None for any other stream."""
    if stream.type != "video":
        return None
    return stream.guessed_rate or stream.average_rate or None


def lasts_for(claimed: Real, gap: Real | None, rate: Fraction | None) -> Real:
    """Seconds a frame (or a sound packet) lasts, starting `gap` seconds after the one before it in a stream of frames
    at `rate`: what its packet `claimed`; where it claims nothing (a browser's MediaRecorder WebM, a live Matroska:
    no durations anywhere), as long as the one before it (a steady clip's frame; a variable one's latest spacing),
    else, a stream's only frame, one frame at `rate` (0 for a sound's only packet). Not counting it at all took a
    recording's picture to end where its last frame starts, and a one-frame picture to last 0 s."""
    if claimed > 0:
        return claimed
    if gap:
        return gap
    return 1 / Fraction(rate) if rate else claimed


def header_end(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Seconds on the file's timeline where the stream's header (else the container's) says it ends; None if
    neither says."""
    tagged = tagged_length(container, stream)  # first, as stream_duration takes it
    if tagged is not None:
        return stream_start(container, stream) + tagged
    if stream.duration:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)
    if container.duration:
        return ((container.start_time or 0) + container.duration) / av.time_base
    return None


def declared_end(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Where the file says the stream ends (seconds), where the stream itself says it: an MP4/MOV's sample tables
    and edit list (exact), a Matroska/WebM track's DURATION tag (to its clock's tick: tagged_length). The
    decoder still outputs the padding that fills the last AAC frame, which this end drops. Other formats, and a
    container-wide duration (the longest stream's), only estimate it. Some state their end to the decoder instead,
    which trims to it: an Ogg stream's last granule position (FFmpeg's own Vorbis encoder states 56 samples past
    the sound it was given: what the file says is taken), an MP3's LAME/Xing header (delay and padding). A raw
    ADTS .aac states neither its priming nor its padding anywhere: its 1024 priming samples and last frame's
    padding (~44 ms at 44.1 kHz) are read as sound, there being nothing to take them from."""
    if ("mp4" in container.format.name and stream.duration) or tagged_length(container, stream) is not None:
        return header_end(container, stream)
    return None


def tagged_length(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Seconds a Matroska/WebM track lasts by its DURATION tag, to the track's clock tick (1 ms by default); None
    when it has none. Writers differ on what the tag holds under one name: FFmpeg's muxer writes where the track
    ENDS on the file's timeline (its last packet's time plus duration), mkvmerge's statistics the length itself
    (last end minus first time) — "DURATION-eng" for an English track, but plain "DURATION", as FFmpeg's, for one in
    no language ("und") — and a remux by either may carry the other's tags along. The two readings differ only for a
    track that starts after the file's zero; for such a track the packets decide (_ends_at_tag): FFmpeg's reading
    when the track stops at the tag's time, mkvmerge's when it runs on past it. A plain tag is preferred to one
    with a language (FFmpeg writes its own plain, fresh, beside any it copied). Either counts the encoder's priming
    (AAC's 1024 samples, Opus's pre-skip: the codec delay), which the decoder drops, so that is taken off too,
    rounded onto the track's clock as the demuxer rounds it (to nearest, halves up). A tag that ends the track
    before a packet of it starts is wrong (a player plays the packets; the tag cut their sound, silently): it is
    said, and None is returned (_runs_past)."""
    if "matroska" not in container.format.name:
        return None
    tags = [(k, v) for k, v in stream.metadata.items() if k.upper().split("-")[0] == "DURATION"]
    text = next((v for k, v in sorted(tags, key=lambda kv: "-" in kv[0])), "")
    parts = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d*)?)", text.strip())
    if parts is None:
        return None
    hours, minutes, seconds = parts.groups()
    length = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    start = stream_start(container, stream)
    if start > float(stream.time_base) and _ends_at_tag(container.name, stream.index, length, start):
        length -= start  # FFmpeg's: where the track ends
    if _runs_past(container.name, stream.index, start + length):
        note(container.name, f"its {stream.type} track's DURATION tag ends it at {start + length:.3f} s, but its "
             "packets run on past that; it is read to the end of its packets, as players play it",
             "a DURATION tag shorter than the packets, which are read to their end")
        return None
    context = stream.codec_context
    if stream.type == "audio" and context.delay > 0 and context.sample_rate:
        tick = stream.time_base
        length -= float(math.floor(Fraction(context.delay, context.sample_rate) / tick + Fraction(1, 2)) * tick)
    return length if length > 0 else None


def _runs_past(path: str, index: int, tagged: float) -> bool:
    """Whether a packet of stream `index` of the Matroska file `path` starts after `tagged` seconds on the file's
    timeline (more than 1.5 ticks of its clock after), where its DURATION tag, read as tagged_length reads it (the
    encoder's priming still counted), ends it: then its sound or picture runs on more than a packet past the tag,
    which a player plays, and the tag is wrong (a tag cut sound the packets held, silently). Read from its packets
    from a second before `tagged` (a seek) to a second after; an unreadable file keeps its tag. Asked once per file
    as it is (path, size, time written)."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return _runs_past_at(path, stat.st_size, stat.st_mtime_ns, index, tagged)


@functools.lru_cache(maxsize=64)
def _runs_past_at(path: str, size: int, written: int, index: int, tagged: float) -> bool:
    try:
        with av.open(path, metadata_errors="replace") as container:
            stream = container.streams[index]
            container.seek(max(0, int((tagged - 1) / stream.time_base)), stream=stream, backward=True)
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                at = float(packet.pts * packet.time_base)
                if packet.stream.index == index and at > tagged + 1.5 * float(packet.time_base):
                    return True
                if at > tagged + 1:
                    return False
    except av.error.FFmpegError:
        return False
    return False


def _ends_at_tag(path: str, index: int, tagged: float, start: float) -> bool:
    """Whether stream `index` of the Matroska file `path`, starting at `start` seconds, stops at `tagged` seconds on
    the file's timeline (its DURATION tag is FFmpeg's end), rather than running on towards `start` + `tagged` (the
    tag is a length, mkvmerge's): read from its packets around `tagged` (a seek, then packets up to a second past
    the later reading); an unreadable file, or one whose data stops before either, takes the earlier end. Asked
    once per file as it is (path, size, time written)."""
    try:
        stat = os.stat(path)
    except OSError:
        return True
    return _ends_at(path, stat.st_size, stat.st_mtime_ns, index, tagged, start)


@functools.lru_cache(maxsize=64)
def _ends_at(path: str, size: int, written: int, index: int, tagged: float, start: float) -> bool:
    try:
        with av.open(path, metadata_errors="replace") as container:
            stream = container.streams[index]
            tick = float(stream.time_base)
            container.seek(max(0, int((tagged - 1) / stream.time_base)), stream=stream, backward=True)
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                at = float(packet.pts * packet.time_base)
                ends = at + float((packet.duration or 0) * packet.time_base)
                if packet.stream.index == index and ends > tagged + 1.5 * tick:
                    return False
                if at > tagged + start + 1:
                    return True
    except av.error.FFmpegError:
        return True
    return True


def last_frame_end(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    start: float,
    claimed: float,
    before: float | None = None,
) -> float:
    """Seconds at which a video stream's last frame, on screen from `start` (the frame before it from `before`), is
    gone: after what lasts_for says (the `claimed` duration of its packet, else the spacing of the frames before
    it, else one frame at the stream's rate), never past the end the header declares when that is after `start`.
    Only the last frame's claim counts: an MP4 packet's duration is a gap in decode order, so with B-frames a frame
    in the middle of a variable-rate clip can claim a second it is not shown for."""
    gap = None if before is None or before >= start else start - before
    end = start + lasts_for(claimed, gap, stream_rate(stream))
    declared = header_end(container, stream)
    return min(end, declared) if declared is not None and declared > start else end


def origin(container: av.container.InputContainer) -> float:
    """Seconds of the timeline's zero: the container's start time (MPEG-TS clips rarely start at 0). Reads and
    remuxes measure time from here, the way players do, so audio and video stay in step. It is the earliest
    stream's start, taken again from stream_start where FFmpeg put an Opus track's start late."""
    if container.start_time is None:
        return 0.0
    if not any(_late_opus_start(container, stream) for stream in container.streams.audio):
        return container.start_time / av.time_base
    return min(stream_start(container, stream) for stream in container.streams if stream.start_time is not None)


def stream_start(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    """Seconds on the file's timeline where `stream` starts (0 where it does not say)."""
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base - _late_opus_start(container, stream))


def _late_opus_start(container: av.container.InputContainer, stream: av.stream.Stream) -> Fraction:
    """How late FFmpeg puts the start of an Opus track in Matroska/WebM (0 for any other stream; negative: early).
    The track starts at its first packet's time plus the pre-skip (the codec delay, always counted in Opus's 48 kHz
    samples), but FFmpeg counts those samples at the track's sampling frequency: FFmpeg's own muxer records the
    rate the sound was encoded from (its OpusHead's), so a 16 kHz track started 13 ms late (8 kHz: 32 ms) and its
    sound was read that much short; a stream copy of that file records 48 kHz (the rate FFmpeg reads back),
    whatever the OpusHead says, and starts right. That frequency is not read back (FFmpeg reports 48 kHz), so the
    first packet says: taking the OpusHead's rate for it put a copy's start 13 ms early, and its picture ran 13 ms
    (at 10 fps, a frame) long. The same rounding to the track's clock as FFmpeg's."""
    context = stream.codec_context
    if (stream.type != "audio" or context.name != "opus" or "matroska" not in container.format.name
            or stream.start_time is None or context.delay <= 0):
        return Fraction(0)
    first = _first_packet_time(container, stream)
    if first is None:
        return Fraction(0)
    tick = Fraction(stream.time_base)
    skipped = math.floor(Fraction(context.delay, OPUS_RATE) / tick + Fraction(1, 2))  # av_rescale_q: halves up
    return (stream.start_time - first - skipped) * tick


def _first_packet_time(container: av.container.InputContainer, stream: av.stream.Stream) -> int | None:
    """The time of the stream's first packet (in ticks of its clock), the one FFmpeg starts it from; None when
    none holds one or the file cannot be read again. Read once per file as it is (path, size, time written)."""
    try:
        stat = os.stat(container.name)
    except OSError:
        return None
    return _first_packet_at(container.name, stat.st_size, stat.st_mtime_ns, stream.index)


@functools.lru_cache(maxsize=64)
def _first_packet_at(path: str, size: int, written: int, index: int) -> int | None:
    try:
        with av.open(path, metadata_errors="replace") as container:
            for packet in container.demux(container.streams[index]):
                if packet.pts is not None:
                    return packet.pts
    except av.error.FFmpegError:
        return None
    return None
