"""Retake: regenerate one modality of a clip between A and B seconds (several ranges allowed), conditioned on
the other modality everywhere and on the same modality outside the ranges, so the new part joins its
surroundings (retake_windows.py). Outside the ranges the output is the input: an audio retake keeps the
input's samples exactly (at the delivered rate) and copies the picture's packets; a video retake keeps the
input's frames and copies the sound's packets."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mmgen.calls import pipeline_call
from mmgen.errors import InvalidSetting
from mmgen.media import MediaInfo, read_audio, read_video, read_video_spans, replace_video
from mmgen.media.containers import container_for, kept_rate
from mmgen.media.decode import kept_layout, within_full_scale
from mmgen.media.notes import note
from mmgen.media.probe import frame_gaps
from mmgen.media.remux import check_kept
from mmgen.media.tracks import float_pcm
from mmgen.modal import Modal
from mmgen.pipelines import outputs
from mmgen.pipelines.arguments import check_arguments
from mmgen.pipelines.clips import Clip, Provenance, Result
from mmgen.pipelines.events import ProgressFn, quiet
from mmgen.pipelines.preflight import check_retake
from mmgen.pipelines.retake_sound import write_sound
from mmgen.pipelines.retake_windows import SEAM_SECONDS, elements, regenerate, window_starts
from mmgen.pipelines.sampling import window_sampler
from mmgen.pipelines.session import load, prepare
from mmgen.pipelines.settings import RetakeSettings
from mmgen.pipelines.windows import Track, cut, tracks_for
from mmgen.terminal import listed, rate_text
from mmgen.weights.architecture import known_config


def check_frames(settings: RetakeSettings, info: MediaInfo, config: Any | None) -> None:
    """A video retake remakes frames in place, and outside the ranges the output is the input's own frames: the
    clip must be at the model's frame size and a steady frame rate, the model's, as mmgen's own outputs are (None:
    not known yet). A clip at another rate, or a variable one (whatever its average), would come out resampled to
    the model's. A steady clip with a frame missing (a phone's dropped frame) is taken, with a note: the frame before
    is held in the missing one's place, as a player shows it (read_video reads the frame on screen), and the output
    is steady."""
    if settings.modality != "video" or config is None:
        return
    height, width = config.video_size[2:]
    if (info.height, info.width) != (height, width):
        raise InvalidSetting("video", f"a picture retake needs a clip at the model's frame size {width}x{height} "
                             f"(mmgen's own outputs); {info.path} is {info.width}x{info.height}",
                             hint="retake its sound instead")
    gaps = frame_gaps(info.path)
    # A steady clip's rate is its frames' own (frame_times.steady_rate, over all its frames here): FFmpeg's average also
    # counts the last frame's duration, which a muxer may write short (a 10 fps clip read as 10.3 fps).
    fps = float(gaps.rate) if gaps is not None and gaps.rate else info.fps
    if gaps is not None and gaps.varies:
        found = (f"{info.path}'s frame rate varies (frames {gaps.shortest * 1000:.0f} to {gaps.longest * 1000:.0f} "
                 "ms apart)")
    elif fps is not None and abs(fps - config.fps) > 0.01 * config.fps:
        found = f"{info.path} runs at {rate_text(fps)} fps"
    else:
        if gaps is not None and gaps.missing:  # a dropped frame: its slot is read as players show it
            times = listed([f"{info.video_start + t:.3f} s" for t in gaps.missing], 3)
            some = "a frame is" if len(gaps.missing) == 1 else f"{len(gaps.missing)} frames are"
            note(info.path, f"{some} missing at {times} (a steady {rate_text(fps)} fps otherwise): the frame before is held in "
                 "its place, as players show it, or made anew inside a range", "frames missing, the one before held")
        return
    raise InvalidSetting("video", f"a picture retake needs a clip at the model's frame rate {rate_text(config.fps)} fps "
                         f"(mmgen's own outputs); {found}", hint="retake its sound instead")


def picture_at(source: Path, fps: float, size: tuple[int, int], start: float, starts: list[int], frames: int,
               track: Track) -> Callable[[int], Modal]:
    """The picture a sound retake's windows (first frames `starts`, `frames` long) are conditioned on, window by
    window, read once: only their frames are held (a long input's whole picture at the model's size outweighs its
    sound), each as `read_video` reads it, cut as `regenerate` cuts a whole one (padded past the picture's end)."""
    spans: list[tuple[int, int]] = []
    for first in sorted(set(starts)):
        if spans and first <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], first + frames))
        else:
            spans.append((first, first + frames))
    read = read_video_spans(source, fps, size, spans, start)
    pieces = [(a, piece[None]) for (a, _), piece in zip(spans, read, strict=True)]

    def at(first: int) -> Modal:
        a, piece = next((a, piece) for a, piece in reversed(pieces) if a <= first)
        return {"video": cut(piece, track, first - a, frames)}

    return at


@pipeline_call
def retake(
    input: str | Path,
    output: str | Path | None,
    settings: RetakeSettings,
    *,
    overwrite: bool = False,
    progress: ProgressFn = quiet,
    inputs: Sequence[Path] = (),
) -> Result:
    """Write OUTPUT (default INPUT_retake.mp4, or the input's container when mp4 cannot carry its picture):
    the input with `settings.modality` remade inside `settings.ranges` ("A:B" in seconds, each a str).
    `inputs`: more files read while it runs (a batch's other jobs'), kept like its own: never an output's file."""
    check_arguments("retake", settings, RetakeSettings, paths={"input": input, "output": output},
                    path_lists={"inputs": inputs}, overwrite=overwrite, progress=progress)
    modality, delivery = settings.modality, settings.delivery()
    checked = check_retake(input, output, settings, overwrite=overwrite, inputs=inputs)
    source, info, streams, spans, paths, inputs = (checked.source, checked.info, checked.streams, checked.spans,
                                                   checked.paths, checked.inputs)
    check_kept(source, settings.kept, paths.mp4)
    run = prepare(settings)
    known = known_config(run.model)
    check_frames(settings, info, known)  # before loading, when the config is known without it
    models = load(run)
    config = models.base.config
    if known is None:
        check_frames(settings, info, config)
    size = tuple(config.video_size[2:])
    started = time.perf_counter()
    tracks = tracks_for(config.frames, config.audio_length)
    # Both streams from where the remade one starts: it is remade in place on its own timing (its frames or samples
    # as they were), with the other beside it in step as in the input; it goes back at that start.
    start = streams[modality][0]
    encoder = container_for(paths.mp4).sound_encoder(info.audio_codec)  # PCM stays PCM
    # A sound retake keeps the input's channels where the encoder takes them (None: mixed to mono); the model hears
    # their mix.
    kept = kept_layout(source, encoder) if modality == "audio" else None
    audio = within_full_scale(read_audio(source, config.sample_rate, start=start, layout=kept, heard_by_model=True),
                              source).mean(0, keepdim=True)[None]
    per_second = {"video": config.fps, "audio": config.sample_rate}[modality]
    seam = max(2, round(SEAM_SECONDS * per_second))
    ranges = [elements(r, per_second, start) for r in spans]
    context = round(settings.overlap * config.frames)
    if modality == "audio":  # the picture only where the windows are: a long input's would outweigh its sound
        starts = window_starts(audio.shape[tracks["audio"].axis], ranges, tracks["audio"].per_frame, config.frames,
                               context, seam)
        clip = {"video": torch.empty(1, 0, 3, *size), "audio": audio}  # the output's picture: the input's packets
        given = picture_at(source, config.fps, size, start, starts, config.frames, tracks["video"])
    else:
        clip = {"video": read_video(source, config.fps, size, start=start)[None], "audio": audio}
        given = {"audio": audio}
    made, windows = regenerate(window_sampler(run, models.base, progress), given, modality, clip[modality], ranges,
                               tracks, config.frames, context, seam, progress)
    clip[modality] = made
    result_clip = Clip.sampled(clip["video"][0], clip["audio"][0], config.fps, config.sample_rate)
    delivered = None
    with outputs.new_folders_removed_on_failure([paths]), outputs.writing(paths, overwrite, inputs):  # all, or none
        if modality == "audio":
            delivery = kept_rate(delivery, paths.mp4, config.sample_rate, "the model's")
            delivered = write_sound(source, result_clip.audio, config.sample_rate, spans, start, delivery, kept,
                                    encoder, paths.files, overwrite=overwrite, bits=info.audio_bits,
                                    float_input=float_pcm(info.audio_codec or ""))
        else:
            replace_video(source, result_clip.video, config.fps, paths.mp4, overwrite=overwrite, end_together=False,
                          start=start)
        provenance = Provenance.matching(
            run, models, time.perf_counter() - started, settings.overlap, windows, source,
            retake={"modality": modality, "ranges": [[r.start, r.end] for r in spans]},
            delivery=delivered.to_json() if delivered else None,
        )
        return outputs.finish(Result(result_clip, provenance), paths, overwrite)

