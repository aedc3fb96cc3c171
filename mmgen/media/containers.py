"""Which container an output is, what it can carry untouched, and what it encodes new tracks with.

A user's VP8 WebM or ProRes MOV keeps its picture byte for byte when the output is a container that can hold
it: the output's suffix names the container (`-o out.webm`, `.mkv`, `.mov`, `.mp4`), and by default an output
follows its input's container whenever mp4 cannot carry the input's video (`default_suffix`). Only when the
chosen container cannot carry a stream is that stream re-encoded (with a warning, see remux).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from mmgen.errors import UsageError, output_named
from mmgen.media.delivery import RATES, Delivery
from mmgen.media.notes import logger

log = logger(__name__)

# PCM a .mov and a .mkv hold as it is, each depth muxed and read back sample for sample (FFmpeg: 16, 24, 32-bit
# integers, 32-bit float): a WAV's sound kept in either is copied, not encoded to AAC.
PCM = frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le"})
# Lossless sound codecs that PyAV encodes and a container here holds: a sound decoded from one and encoded again
# keeps every sample.
LOSSLESS_AUDIO = PCM | {"flac", "alac"}
# Encoders whose sound every decoder gives back at one rate, whatever rate it was encoded from.
DECODED_AT = {"libopus": 48_000}


@dataclass(frozen=True)
class Container:
    """An output format: the codecs whose packets it takes as they are, and the encoders for new tracks."""

    name: str  # as messages say it: "mp4", "webm", ...
    video_copy: frozenset[str]
    audio_copy: frozenset[str]
    video_encoder: str  # for generated or re-encoded pictures
    audio_encoder: str  # for generated or re-encoded sound
    alpha_encoder: str | None = None  # for a re-encoded picture with an alpha channel, kept (None: it holds none)

    def copies(self, kind: str, codec: str) -> bool:
        return codec in (self.video_copy if kind == "video" else self.audio_copy)

    def sound_encoder(self, own: str | None) -> str:
        """The encoder for sound made from a source's own sound in codec `own` (a retake's): `own` itself when it is
        lossless (LOSSLESS_AUDIO) and this container holds it — a PCM sound (16 or 24-bit) retaken into a .mkv or .mov keeps
        its samples outside the ranges exactly — else audio_encoder."""
        return own if own in LOSSLESS_AUDIO and self.copies("audio", own) else self.audio_encoder

    def audio_rates(self) -> tuple[int, ...]:
        """The sample rates, within those mmgen delivers (delivery.RATES), that its sound is stored at — read back
        at — lowest first (AAC: 8000 … 96000). Opus takes 8 to 48 kHz in, but every decoder gives it back at 48 kHz
        (DECODED_AT), so 48000 is the one rate a WebM's sound is stored at: an explicit 8000 is refused as AAC's
        10000 is, and a kept sound goes in at 48 kHz, so the note, the summary and the sidecar say one rate."""
        return _stored_rates(self.audio_encoder)

    def audio_rate(self, rate: int) -> int:
        """The rate its sound is stored at for sound made or read at `rate` that no one asked to change (a sound's
        own rate, kept): `rate` if it is stored at that rate, else the nearest rate above it that it is (resampling
        up keeps every frequency: a 4 kHz WAV goes into AAC at 8 kHz), else its highest (Opus: 48 kHz)."""
        rates = self.audio_rates()
        return rate if rate in rates else next((r for r in rates if r > rate), rates[-1])


@functools.cache
def _stored_rates(encoder: str) -> tuple[int, ...]:
    """Container.audio_rates of a container whose sound `encoder` makes: asked once per planned output (a
    generate of 20,000 clips), looked up in the codec library once."""
    if encoder in DECODED_AT:
        return (DECODED_AT[encoder],)
    import av  # here: choosing a container on the way to parsing the command line needs no codec library

    stored = av.Codec(encoder, "w").audio_rates or range(RATES[0], RATES[1] + 1)
    return tuple(sorted(rate for rate in set(stored) if RATES[0] <= rate <= RATES[1]))


_MP4_VIDEO = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"})
CONTAINERS = {
    ".mp4": Container("mp4", _MP4_VIDEO, frozenset({"aac", "mp3"}), "libx264", "aac"),
    ".mov": Container("mov", _MP4_VIDEO | {"prores", "mjpeg"}, frozenset({"aac", "mp3", "alac"}) | PCM,
                      "libx264", "aac", "prores_ks"),
    ".mkv": Container("mkv", _MP4_VIDEO | {"vp8", "prores", "mjpeg", "theora", "mpeg2video"},
                      frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3"}) | PCM, "libx264", "aac",
                      "prores_ks"),
    ".webm": Container("webm", frozenset({"vp8", "vp9", "av1"}), frozenset({"opus", "vorbis"}),
                       "libvpx-vp9", "libopus", "libvpx-vp9"),
}
SUFFIXES = tuple(CONTAINERS)
# The suffixes of the media files mmgen writes and reads (a sound, a still, a GIF, other containers): a name ending
# in one is a file's, never a new folder's (generate -o clip.gif).
MEDIA_SUFFIXES = (*SUFFIXES, ".wav", ".gif", ".avi", ".m4v", ".ts", ".mts", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
                  ".m4a", ".mp3", ".aac", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".wma",
                  ".png", ".apng", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def container_for(path: str | os.PathLike) -> Container:
    """The container an output path names by its suffix; a UsageError for any other suffix."""
    path = Path(path)
    container = CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise UsageError(f"cannot write {path}: the output must be a {', '.join(SUFFIXES)} file",
                         hint=f"e.g. {output_named(path.with_suffix('.mp4'))}")
    return container


def kept_rate(delivery: Delivery, out: str | os.PathLike, rate: int, whose: str) -> Delivery:
    """`delivery` for a sound made or read at `rate` (`whose`: "the model's", "song.wav's") going into `out`: as it
    is where it names a rate (--sample-rate HZ, which the commands refuse up front where `out` cannot store it);
    else — `model`, or a sound kept as it is — at the rate `out`'s container stores it at (Container.audio_rate: its
    own, or the nearest above that the container stores), with a note where that is not its own."""
    if delivery.sample_rate is not None:
        return delivery
    into = container_for(out)
    stored = into.audio_rate(rate)
    if stored != rate:
        codec = into.audio_encoder.removeprefix("lib")
        log.warning("%s %s Hz sound goes into %s at %s Hz (%s in %s stores no %s Hz)", whose, f"{rate:,}",
                    Path(out).name, f"{stored:,}", codec, into.name, f"{rate:,}")
    return dataclasses.replace(delivery, sample_rate=stored)


def default_suffix(input: str | os.PathLike, video_codec: str | None) -> str:
    """".mp4", unless mp4 cannot carry the input's video as is: then the input's own container if it is one we
    write (a VP8 .webm stays .webm), else mkv (which carries nearly anything)."""
    if video_codec is None or CONTAINERS[".mp4"].copies("video", video_codec):
        return ".mp4"
    own = CONTAINERS.get(Path(input).suffix.lower())
    return Path(input).suffix.lower() if own and own.copies("video", video_codec) else ".mkv"


def holders(kind: str, codec: str) -> list[str]:
    """The suffixes of the containers that carry a `kind` stream of `codec` as is."""
    return [suffix for suffix, container in CONTAINERS.items() if container.copies(kind, codec)]
