"""The checks a pipeline makes before any model loads, in a module that does not import torch: the input is a
usable media file, every output can be written and is none of the run's inputs, the model resolves (a name in the
registry or the cache, a file that is there). Each pipeline calls them first, and each command calls the same
function before it imports its pipeline, so a refusal that needs no model answers at once, not after the seconds
torch takes to import; the pipeline's call then finds them done (checked_once). (Reading a model file's header,
once the file is there, imports torch.)"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmgen.adapters.store import files_of
from mmgen.diffusion.sampling_config import preset_file
from mmgen.errors import InvalidSetting, MediaError, ModelNotFound, UsageError, output_named
from mmgen.input_files import why_not_a_file
from mmgen.media.containers import MEDIA_SUFFIXES
from mmgen.media.probe import MAX_CHANNELS, MediaInfo, probe
from mmgen.pipelines import outputs
from mmgen.pipelines.checked_once import checked_once
from mmgen.pipelines.settings import GenerateSettings, MatchingSettings, RetakeSettings, RunSettings
from mmgen.runtime.device_names import check_device_name
from mmgen.weights import sidecar
from mmgen.weights.cache import ModelCache
from mmgen.weights.lineage import own_lineage
from mmgen.weights.names import is_name, is_path
from mmgen.weights.pull import availability, pull, stored_files
from mmgen.weights.registry import load_registry

LOCAL = ("bundled", "cached")
OTHER = {"video": "audio", "audio": "video"}
# The shortest input (either stream) and the lowest sound sample rate read: below them the sound, at the model's rate
# or the delivered one, would be empty (a clip of 2 frames at 1,000,000 fps) or cut short (libswresample gives
# nothing of a few samples at a time, or of a sound at a few Hz), met after all the sampling as a ValueError.
MIN_SECONDS = 0.01
MIN_INPUT_RATE = 4_000  # Hz
STILL_CODECS = {"png", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp", "gif", "ppm", "pgm", "qoi"}
NOUNS = {"video": "picture", "audio": "sound"}
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)  # a range's end: digits 0-9 and a point, only


@dataclass(frozen=True, order=True)
class TimeRange:
    """[start, end) in seconds of the input's timeline."""

    start: float
    end: float
    typed: str = field(default="", compare=False)  # as the user wrote it, for the lines that name it

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """"A:B" in seconds, e.g. "2:3.5": the digits 0-9 and a point, nothing else — as the error says (float()
        would also take signs, spaces, exponents, "1_0", other scripts' digits, "inf" and "nan")."""
        parts = str(text).split(":")
        if len(parts) != 2 or not all(_SECONDS.fullmatch(part) for part in parts):
            raise InvalidSetting("ranges", "expected A:B in seconds, written with the digits 0-9 and a point "
                                 f"(e.g. 2:3.5), got {text!r}")
        a, b = (float(part) for part in parts)
        if not math.isfinite(b):  # 400 digits: past what a float holds
            which = "start" if not math.isfinite(a) else "end"
            raise InvalidSetting("ranges", f"the {which} must be a finite number of seconds", text)
        if not a < b:
            raise InvalidSetting("ranges", "the end must come after the start", text)
        return cls(a, b, str(text))

    def __str__(self) -> str:
        """As typed (`0:99999999999999999999999999`, not `0:1e+26`); a range made here (two joined) as `:g` writes it."""
        return self.typed or f"{self.start:g}:{self.end:g}"


def check_ranges(
    ranges: Sequence[TimeRange | str], spans: Mapping[str, tuple[float, float]], modality: str, path: Path
) -> list[TimeRange]:
    """The ranges sorted, ranges that meet (1:2, 2:3) joined; overlapping ones are refused (which of them a user
    meant is not ours to guess, and a silent merge would remake seconds given twice as one range). Each must end
    within the remade stream (`spans[modality]`: where it starts and ends on the input's timeline, stream_spans) and
    within the other stream, which conditions the remade one everywhere in the range (the two may differ in length
    and start), and hold some of the remade stream."""
    parsed = sorted(r if isinstance(r, TimeRange) else TimeRange.parse(r) for r in ranges)
    if not parsed:
        raise InvalidSetting("ranges", "retake needs at least one range A:B (in seconds)")
    other = OTHER[modality]
    merged: list[TimeRange] = []
    for r in parsed:
        for kind in (modality, other):
            if r.end > spans[kind][1] + 1e-6:
                lasts = (f"lasts only {spans[kind][1]:.3f} s" if spans[kind][0] < 1e-6
                         else f"ends at {spans[kind][1]:.3f} s")
                why = "" if kind == modality else f", and the {NOUNS[modality]} is remade to match it"
                raise InvalidSetting("ranges", f"{path}'s {NOUNS[kind]} {lasts}{why}", r)
        if r.end <= spans[modality][0] + 1e-6:
            raise InvalidSetting("ranges", f"{path}'s {NOUNS[modality]} starts at {spans[modality][0]:.3f} s", r)
        if merged and r.start < merged[-1].end:
            raise InvalidSetting("ranges", f"{merged[-1]} and {r} overlap", hint="give each second once: "
                                 f"{TimeRange(merged[-1].start, max(r.end, merged[-1].end))} for both")
        if merged and r.start == merged[-1].end:
            r = TimeRange(merged[-1].start, max(r.end, merged[-1].end))
            merged.pop()
        merged.append(r)
    return merged


def stream_spans(info: MediaInfo) -> dict[str, tuple[float, float]]:
    """Where each stream starts and ends, in seconds on the input's timeline (from its origin, where the earlier
    stream starts: 0 as players show it), each stream's own: a camera's sound may run before its picture, a sound
    may be delayed (the container's duration where a stream's own is not known: None, never a length of 0)."""
    spans = {}
    for kind in ("video", "audio"):
        start = getattr(info, f"{kind}_start")
        duration = getattr(info, f"{kind}_duration")
        spans[kind] = (start, start + (info.duration if duration is None else duration))
    return spans


@dataclass(frozen=True)
class Matching:
    """What soundtrack's or animate's checks found: the input, where the output goes and its files, every file the
    run reads (never an output's), and where the given stream starts on the input's timeline and how long it lasts."""

    source: Path
    output: Path
    paths: outputs.OutputPaths
    inputs: list[Path]
    start: float
    seconds: float


@checked_once(read=lambda found: found.inputs)  # the command's check, before torch loads, is its pipeline's
def check_matching(command: str, input: str | Path, output: str | Path | None, settings: MatchingSettings, *,
                   overwrite: bool = False, inputs: Sequence[Path] = ()) -> Matching:
    """soundtrack's or animate's (`command`) checks: the input, the output (OUTPUT as given, or named after the
    input: outputs.output_for), the model. `inputs`: more files read while it runs (a batch's other jobs')."""
    check_device(settings.device)
    output = outputs.output_for(input, output, command)
    source = Path(input)
    given = settings.given
    start, seconds = check_input(source, given)
    for stream in settings.streams():
        if stream != given:
            check_input(source, stream)
    paths = settings.outputs(output)
    inputs = [source, *input_files(settings), *inputs]
    outputs.check_outputs([paths], overwrite, inputs=inputs, sample_rate=settings.asked_rate())
    check_sampling(settings)
    return Matching(source, output, paths, inputs, start, seconds)


@dataclass(frozen=True)
class Retaking:
    """What retake's checks found: the input and what probing it told, where each stream starts and ends on its
    timeline (stream_spans), the ranges to remake (check_ranges), the output's files, every file the run reads."""

    source: Path
    info: MediaInfo
    streams: dict[str, tuple[float, float]]
    spans: list[TimeRange]
    paths: outputs.OutputPaths
    inputs: list[Path]


@checked_once(read=lambda found: found.inputs)  # the command's check, before torch loads, is its pipeline's
def check_retake(input: str | Path, output: str | Path | None, settings: RetakeSettings, *,
                 overwrite: bool = False, inputs: Sequence[Path] = ()) -> Retaking:
    """retake's checks: the input (both streams there and usable), the ranges, the output, the model. `inputs`: more
    files read while it runs (a batch's other jobs')."""
    check_device(settings.device)
    source = Path(input)
    info = probe(source)
    for kind in OTHER:
        if not getattr(info, f"has_{kind}"):
            raise MediaError(f"cannot retake {source}: it has no {kind} stream (a retake keeps one and remakes "
                             "the other within the ranges)")
    streams = stream_spans(info)
    for kind in OTHER:  # the limits soundtrack and animate hold their inputs to, before any work
        check_sound(info, kind)
        check_length(info, kind, streams[kind][1] - streams[kind][0])
    spans = check_ranges(settings.ranges, streams, settings.modality, source)
    paths = settings.outputs(outputs.output_for(source, output, "retake"))
    inputs = [source, *input_files(settings), *inputs]
    outputs.check_outputs([paths], overwrite, inputs=inputs, sample_rate=settings.asked_rate())
    check_sampling(settings)
    return Retaking(source, info, streams, spans, paths, inputs)


@checked_once(read=lambda found: found[1])  # the command's check, before torch loads, is its pipeline's
def check_generate(out_dir: str | Path, settings: GenerateSettings, *, overwrite: bool = False
                   ) -> tuple[list[outputs.OutputPaths], tuple[Path, ...]]:
    """generate_files's checks: OUT_DIR, every clip's files, the model. Returns the clips' files and the files the
    run reads."""
    check_device(settings.device)
    check_folder_name(out_dir)
    inputs = input_files(settings)
    first = [settings.outputs(Path(out_dir) / f"{outputs.CLIP_STEM.format(0)}.mp4")]
    # the first clip's files alone, first: an OUT_DIR of an earlier run holds clip_0000.mp4, said at once (it was
    # said after the names of all -n clips were made, 77 s for -n 100000)
    outputs.check_outputs(first, overwrite, inputs=inputs, sample_rate=settings.asked_rate())
    paths = first + [settings.outputs(Path(out_dir) / f"{outputs.CLIP_STEM.format(k)}.mp4") for k in range(1, settings.num)]
    outputs.check_outputs(paths, overwrite, inputs=inputs, sample_rate=settings.asked_rate())
    check_sampling(settings)
    return paths, inputs


def check_device(name: str) -> None:
    """The device a run names (cuda, cuda:N, mps) is on this machine: asked first, before the outputs' checks
    (`generate -n 100000 --device cuda` said CUDA was missing after 400,000 file checks, twice). It imports torch,
    which a run on that device loads next anyway; auto and cpu are always there and import nothing."""
    if check_device_name(name) in ("auto", "cpu"):
        return
    from mmgen.runtime.device import select_device

    select_device(name)


def check_folder_name(out_dir: str | Path) -> None:
    """Refuse a new OUT_DIR named as a media file (`-o clip.mp4`, `clip.gif`, `clip.m4a`): it became a folder
    `clip.mp4/` holding clip_0000.mp4, without a word. An existing folder of that name, or one written with a trailing slash, is taken."""
    text = str(out_dir)
    folder = Path(text)
    if folder.suffix.lower() in MEDIA_SUFFIXES and not text.endswith(("/", os.sep)) \
            and not os.path.lexists(folder):
        raise UsageError(
            f"{output_named(text)} names a file, and generate writes its clips into a folder",
            hint=f"its clips are named {outputs.CLIP_STEM.format(0)}.mp4 …; give {output_named(str(folder.with_suffix('')) + '/')}, "
                 f"or {output_named(text + '/')} for a folder of that name")


def check_input(path: Path, given: str) -> tuple[float, float]:
    """Fail fast on an input without a usable `given` stream; returns where that stream starts on the input's
    timeline (seconds from its origin: a sound 0.5 s behind its picture starts at 0.5) and how long it lasts."""
    info = probe(path)
    if not getattr(info, f"has_{given}"):
        raise MediaError(f"cannot read {path}: it has no {given} stream")
    check_sound(info, given)
    duration = info.video_duration if given == "video" else info.audio_duration
    duration = info.duration if duration is None else duration
    if given == "video" and (info.frames or 0) <= 1 and info.video_codec in STILL_CODECS:
        raise MediaError(f"cannot read {path}: it is a still image ({info.video_codec}), not a video")
    if duration <= 0 or (given == "video" and info.frames == 0):
        raise MediaError(f"cannot read {path}: its {given} stream is empty")
    check_length(info, given, duration)
    return getattr(info, f"{given}_start"), duration


def check_sound(info: MediaInfo, given: str) -> None:
    """An input's sound (`given` "audio") sampled below MIN_INPUT_RATE, or of more than MAX_CHANNELS channels (which
    FFmpeg's resampler cannot mix to mono), is refused before any work."""
    if given != "audio":
        return
    if info.sample_rate is not None and info.sample_rate < MIN_INPUT_RATE:
        raise MediaError(f"cannot read {info.path}: its audio is sampled at {info.sample_rate:,} Hz, out of range "
                         f"(mmgen reads sound sampled at {MIN_INPUT_RATE:,} Hz or more)")
    if (info.audio_channels or 0) > MAX_CHANNELS:
        raise MediaError(f"cannot read {info.path}: its audio has {info.audio_channels} channels, more than the "
                         f"{MAX_CHANNELS} FFmpeg's resampler mixes to mono")


def check_length(info: MediaInfo, given: str, duration: float) -> None:
    """An input whose `given` stream lasts `duration` s, under MIN_SECONDS, is refused before any work."""
    if duration < MIN_SECONDS:
        raise MediaError(f"cannot read {info.path}: its {given} lasts {duration * 1000:.3g} ms, too short to hold any "
                         f"sound (mmgen needs {MIN_SECONDS * 1000:g} ms or more)")


def input_files(settings: RunSettings) -> tuple[Path, ...]:
    """The files a run reads besides its media: the model, its upsampler and every adapter — a file given by path,
    or the file behind a name (bundled, cached, registered) — each with the sidecar .json beside it if there is
    one (a model's config may live there; a cached model's or adapter's record does), and, while a replacement of
    one is in flight or was killed, the old file and record it kept aside, which are what is read (kept_states.last_kept).
    Outputs never replace them."""
    model = str(settings.model)
    if is_path(model):
        given = [Path(model), *filter(None, sidecar.kept_files(Path(model)))]  # and what is read for it
    else:
        given = stored_files(model, own_lineage(model).upsampler if is_name(model) else None)
    given += [path for use in settings.adapters() for path in files_of(use.source) if path.is_file()]
    given += [path.with_suffix(".json") for path in given if path.with_suffix(".json").is_file()]
    return tuple(dict.fromkeys(given))


def check_sampling(settings: RunSettings) -> None:
    """The model a run samples with (check_model) and the sampling preset it lays over the model's settings."""
    if settings.preset is not None:
        preset_file(settings.preset)
    check_model(str(settings.model))


def check_model(name: str) -> None:
    """Check that the weights can be had and are an mm-unet. A file is named as given (`./x.safetensors`, not
    Path's `x.safetensors`)."""
    if is_path(name):
        path = Path(name)
        if why := why_not_a_file(path, missing="no such model file"):
            raise ModelNotFound(f"{name}: {why}")
        # imported here: it imports torch (safetensors' side of it), needed only for a file that is there
        from mmgen.adapters.file import is_adapter_file
        from mmgen.weights.architecture import read_header

        if is_adapter_file(path):
            raise UsageError(f"{name} is a LoRA adapter, not a model",
                             hint=f"use it with --adapter {name} and -m the model it was trained on")
        header = read_header(path)
        if header is not None and header.arch != "mm-unet":
            raise UsageError(f"{name} is an {header.arch} model; this command needs an mm-unet")
        return
    registry, cache = load_registry(), ModelCache()
    entry = registry.entries.get(name)
    if entry is None and cache.record(name) is None:
        registry.get(name)  # raises ModelNotFound with close matches
    if availability(name, entry, cache) not in (*LOCAL, "downloadable"):
        pull(name)  # raises the precise reason: bundled file missing, or how to import it
    arch = entry.arch if entry else cache.record(name).arch
    if arch != "mm-unet":
        raise UsageError(f"{name} is an {arch} model; this command needs an mm-unet (see `mmgen models list`)")
