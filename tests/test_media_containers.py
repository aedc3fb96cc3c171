"""The input's own container: a WebM, MKV or MOV keeps its picture's packets byte for byte in an output of a
container that holds them; the new sound is Opus in WebM and AAC elsewhere; mp4 takes what it can and re-encodes
the rest, saying so."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media_factory import click_time, packets, pattern_frame, write_test_audio, write_test_video

from mmgen.errors import UsageError
from mmgen.media import probe, read_audio
from mmgen.media.containers import container_for, default_suffix
from mmgen.media.remux import replace_audio, replace_video

RATE = 48000


def vp8_vorbis_webm(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    """What a browser's MediaRecorder or an old YouTube download gives: VP8 picture, Vorbis sound."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = container.add_stream("vorbis", rate=RATE, layout="stereo", options={"strict": "experimental"})
        audio.codec_context.options = {"strict": "experimental"}
        for k in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(pattern_frame(k, (64, 64)), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        sound = (0.1 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * RATE)) / RATE)).astype(np.float32)
        for start in range(0, len(sound), 1024):
            frame = av.AudioFrame.from_ndarray(np.stack([sound[start:start + 1024]] * 2), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def soundtrack(seconds: float, click_at: float) -> torch.Tensor:
    audio = torch.zeros(1, round(seconds * RATE))
    audio[0, round(click_at * RATE)] = 0.9
    return audio


@pytest.mark.parametrize(
    "make, out_name, video_codec, audio_codec",
    [
        (lambda d: vp8_vorbis_webm(d / "in.webm"), "out.webm", "vp8", "opus"),
        (lambda d: write_test_video(d / "in.webm", 2.0, codec="vp9", sample_rate=RATE).path, "out.webm", "vp9",
         "opus"),
        (lambda d: write_test_video(d / "in.mkv", 2.0, codec="h264", sample_rate=RATE).path, "out.mkv", "h264",
         "aac"),
        (lambda d: write_test_video(d / "in.mov", 2.0, codec="prores", sample_rate=RATE).path, "out.mov", "prores",
         "aac"),
    ],
    ids=["vp8-vorbis-webm", "vp9-opus-webm", "h264-mkv", "prores-mov"],
)
def test_a_new_soundtrack_keeps_the_inputs_picture_packets_in_its_own_container(
    tmp_path, make, out_name, video_codec, audio_codec, caplog
):
    source = make(tmp_path)
    out = tmp_path / out_name
    with caplog.at_level(logging.WARNING, logger="mmgen.media"):
        replace_audio(source, soundtrack(2.0, click_at=0.7), RATE, out)

    assert "re-encoding" not in caplog.text
    assert packets(out, "video") == packets(source, "video")
    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.sample_rate) == (video_codec, audio_codec, RATE)
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(0.7, abs=0.005)


def test_mp4_cannot_carry_vp8_so_it_is_re_encoded_and_the_warning_names_what_would_keep_it(tmp_path, caplog):
    source = vp8_vorbis_webm(tmp_path / "in.webm")
    with caplog.at_level(logging.WARNING, logger="mmgen.media"):
        replace_audio(source, soundtrack(2.0, click_at=0.7), RATE, tmp_path / "out.mp4")
    assert "vp8 video cannot go into mp4 as is; re-encoding it (a .mkv or .webm output would keep it)" in caplog.text
    assert probe(tmp_path / "out.mp4").video_codec == "h264"


def test_the_default_output_follows_the_input_only_where_mp4_cannot_carry_its_picture():
    assert default_suffix("clip.webm", "vp8") == ".webm"
    assert default_suffix("clip.webm", "vp9") == ".mp4"
    assert default_suffix("clip.mkv", "h264") == ".mp4"
    assert default_suffix("clip.mov", "prores") == ".mov"
    assert default_suffix("clip.avi", "vp8") == ".mkv"  # avi is not written: the container that carries VP8
    assert default_suffix("song.wav", None) == ".mp4"


def test_an_unknown_output_container_is_a_usage_error():
    with pytest.raises(UsageError, match=r"out\.avi: the output must be a \.mp4, \.mov, \.mkv, \.webm file"):
        container_for("out.avi")


def test_new_pictures_over_opus_in_a_webm_are_vp9_with_the_sound_copied(tmp_path):
    source = write_test_audio(tmp_path / "song.webm", seconds=2.0, sample_rate=RATE, click_at=0.9)
    video = torch.from_numpy(np.stack([pattern_frame(k, (64, 64)) for k in range(20)])).permute(0, 3, 1, 2)
    out = tmp_path / "animated.webm"
    replace_video(source.path, video.float() / 127.5 - 1, 10, out)

    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.frames or 20) == ("vp9", "opus", 20)
    kept, original = packets(out, "audio"), packets(source.path, "audio")
    assert kept == original[: len(kept)]
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(0.9, abs=0.005)
