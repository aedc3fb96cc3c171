"""A browser's recording (MediaRecorder) as it is streamed to a WebM: no length in its header, no DURATION tags, and
picture packets that claim no duration. Each frame is on screen until the next, and the last one for as long as the
frames before it were (else a frame at the stream's rate), in every command; and a DURATION tag that ends a track
before its packets do is not believed."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import pytest
import torch
from cli_here import run_here
from media_factory import open_written, packets, write_test_video
from mmgen_cli import mmgen_env

from mmgen.media.decode import read_audio, read_video
from mmgen.media.probe import MediaInfo, probe
from mmgen.media.remux import replace_audio, video_end
from mmgen.pipelines.preflight import check_ranges, stream_spans


def recorded(source: Path, path: Path) -> Path:
    """`source`'s packets streamed into the WebM `path` as MediaRecorder writes them: written only forwards, its
    picture's packets claiming no duration."""
    with av.open(str(source)) as given, open_written(path, piped=True) as out:
        streams = {stream.index: out.add_stream_from_template(stream) for stream in given.streams}
        for packet in given.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                packet.duration = 0
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return path


def made(tmp_path: Path, name: str, seconds: float, audio_seconds: float | None = None) -> Path:
    """A recording of `seconds` of picture at 10 fps (16×16) and, given `audio_seconds`, a 48 kHz Opus sound."""
    source = write_test_video(tmp_path / f"{name}_source.webm", seconds=seconds, size=(16, 16), codec="vp9",
                              audio=audio_seconds is not None, audio_seconds=audio_seconds, sample_rate=48_000).path
    return recorded(source, tmp_path / f"{name}.webm")


def retagged(path: Path, kind: str, tag: str) -> Path:
    """`path` with its `kind` track's DURATION tag (FFmpeg's, as long as the track) made to say `tag` instead, in
    place, as a tool that writes a wrong one would: its packets untouched."""
    with av.open(str(path)) as container:
        said = getattr(container.streams, kind)[0].metadata["DURATION"].encode()
    data = path.read_bytes()
    assert data.count(said) == 1 and len(tag) == len(said)
    path.write_bytes(data.replace(said, tag.encode()))
    return path


def test_a_recordings_last_frame_is_on_screen_for_a_frame_not_for_none(tmp_path):
    """Its picture was taken to end where its last frame starts: 20 frames at 10 fps lasted 1.9 s (`retake --range
    1.5:2`: "picture lasts only 1.900 s"), and two frames 0.1 s apart (FFmpeg's rate: its clock's, 1000 fps) 0.1 s,
    the second shown for 1 ms."""
    clip = made(tmp_path, "rec", 2.0, audio_seconds=2.0)
    with av.open(str(clip)) as container:
        assert {p.duration for p in container.demux(video=0) if p.size} == {0}  # as a browser writes them
    info = probe(clip)
    assert info.video_duration == pytest.approx(2.0, abs=1e-9) and video_end(clip) == pytest.approx(2.0, abs=1e-9)
    assert check_ranges(["1.5:2"], stream_spans(info), "audio", clip)
    assert len(read_video(clip, 10, (16, 16))) == 20

    two = made(tmp_path, "twov", 0.2)
    assert probe(two).video_duration == pytest.approx(0.2) and video_end(two) == pytest.approx(0.2)
    assert len(read_video(two, 1000, (16, 16))) == 200  # the second frame 100 ms on screen, as the first


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_a_recordings_picture_kept_under_a_new_sound_ends_where_the_inputs_does(tmp_path, suffix):
    """Its packets, copied as they are, claimed no duration: the muxer tagged the output's picture to end where its
    last frame starts (0.1 s of a 0.2 s clip, under 0.2 s of sound)."""
    two = made(tmp_path, "twov", 0.2)
    out = tmp_path / f"twov_soundtrack{suffix}"
    replace_audio(two, torch.zeros(1, 3200), 16000, out)
    assert [data for _, data in packets(out, "video")] == [data for _, data in packets(two, "video")]
    info = probe(out)
    assert info.video_duration == pytest.approx(0.2) and info.audio_duration == pytest.approx(0.2, abs=0.002)


def test_a_recording_of_one_frame_is_refused_for_its_length_not_crashed_on_nor_called_empty(tmp_path):
    """A one-frame picture lasted 0 s, and 0 s stood in for "no length" (`or`): retake took the sound's 2 s for
    it and crashed (IndexError, exit 1); soundtrack called it empty. It lasts a frame at its rate (FFmpeg's guess:
    1000 fps), too short for any sound, and says so."""
    clip = made(tmp_path, "onev_a", 0.1, audio_seconds=2.0)
    assert probe(clip).video_duration == pytest.approx(0.001)
    done = run_here("retake", clip, "--range", "0.5:1", "--steps", "1", "-o", tmp_path / "o" / "x.mkv",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "its video lasts 1 ms, too short" in done.stderr and "Error" not in done.stderr
    alone = made(tmp_path, "onev", 0.1)
    done = run_here("soundtrack", alone, "--steps", "1", "-o", tmp_path / "o" / "y.mkv", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and "its video lasts 1 ms" in done.stderr and "empty" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_picture_of_no_length_is_not_taken_to_last_the_files_length():
    """`video_duration or duration`: a picture of 0 s was given the sound's length."""
    info = MediaInfo(Path("x.webm"), 2.0, True, True, video_duration=0.0, audio_duration=2.0)
    assert stream_spans(info) == {"video": (0.0, 0.0), "audio": (0.0, 2.0)}


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_a_duration_tag_that_ends_a_track_before_its_packets_is_not_believed(tmp_path, kind, caplog):
    """A tag of 0.508 s on a sound whose packets run to 2 s cut it there without a word (`animate` "wrote 0.61 s";
    `retake --range 1:1.5`: "sound lasts only 0.501 s"). Players play the packets; so does mmgen, and says so."""
    clip = write_test_video(tmp_path / f"tag_{kind}.webm", seconds=2.0, size=(16, 16), codec="vp9",
                            sample_rate=48_000).path
    retagged(clip, kind, "00:00:00.508000000")
    with caplog.at_level(logging.WARNING, logger="mmgen"):
        info = probe(clip)
        assert getattr(info, f"{kind}_duration") == pytest.approx(2.0, abs=0.01)
        assert check_ranges(["1:1.5"], stream_spans(info), "audio", clip)
        if kind == "audio":
            assert read_audio(clip, 16000).shape[1] == pytest.approx(32000, abs=32)
        else:
            assert len(read_video(clip, 10, (16, 16))) == 20 and video_end(clip) == pytest.approx(2.0)
    assert f"its {kind} track's DURATION tag ends it at 0.508 s, but its packets run on past" in caplog.text
