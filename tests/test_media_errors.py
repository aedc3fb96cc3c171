"""Bad inputs give one MediaError line naming the file (exit code 2), never a PyAV traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media_factory import write_test_audio, write_test_video

from mmgen.errors import MediaError
from mmgen.media import probe, read_audio, read_video, write_mp4


def missing(tmp_path):
    return tmp_path / "missing.mp4"


def directory(tmp_path):
    path = tmp_path / "folder.mp4"
    path.mkdir()
    return path


def empty(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


def random_bytes(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    return path


def truncated(tmp_path):
    """A camera-style mp4 (index at the end) cut in half: the index is gone."""
    path = write_test_video(tmp_path / "whole.mp4", seconds=2.0).path
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def truncated_faststart(tmp_path):
    """An mmgen-style mp4 (index first) cut in half: it opens, but the data stops early."""
    path = tmp_path / "whole.mp4"
    write_mp4(path, torch.rand(20, 3, 32, 32) * 2 - 1, torch.rand(1, 32000) - 0.5, 10, 16000)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def no_frames(tmp_path):
    return write_test_video(tmp_path / "blank.avi", seconds=0, audio=False).path


UNREADABLE = [missing, directory, empty, random_bytes, truncated]


def expect_media_error(read, path, *, match: str = "") -> MediaError:
    with pytest.raises(MediaError, match=match) as caught:
        read(path)
    message = str(caught.value)
    assert path.name in message and "\n" not in message
    assert caught.value.exit_code == 2
    return caught.value


@pytest.mark.parametrize("make", UNREADABLE, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "read",
    [probe, lambda p: read_video(p, 10, (64, 64)), lambda p: read_audio(p, 16000)],
    ids=["probe", "read_video", "read_audio"],
)
def test_unreadable_files_are_reported_by_name(tmp_path, make, read):
    expect_media_error(read, make(tmp_path), match="cannot read")


def test_the_reason_is_in_the_message(tmp_path):
    expect_media_error(probe, missing(tmp_path), match="no such file")
    expect_media_error(probe, directory(tmp_path), match="it is a directory")
    expect_media_error(probe, empty(tmp_path), match="the file is empty")
    expect_media_error(probe, random_bytes(tmp_path), match="not a readable media file")


def test_a_cut_short_faststart_mp4_is_not_taken_for_a_short_clip(tmp_path):
    path = truncated_faststart(tmp_path)
    expect_media_error(lambda p: read_video(p, 10, (32, 32)), path, match="cut short|damaged")
    expect_media_error(lambda p: read_audio(p, 16000), path, match="cut short|damaged")


def test_asking_for_a_stream_the_file_lacks(tmp_path):
    sound = write_test_audio(tmp_path / "sound.m4a").path
    picture = write_test_video(tmp_path / "picture.mp4", audio=False).path
    expect_media_error(lambda p: read_video(p, 10, (64, 64)), sound, match="it has no video stream")
    expect_media_error(lambda p: read_audio(p, 16000), picture, match="it has no audio stream")


def test_a_video_stream_without_frames(tmp_path):
    path = no_frames(tmp_path)
    assert probe(path).has_video
    expect_media_error(lambda p: read_video(p, 10, (64, 64)), path, match="the video has no frames")


def test_reading_past_the_end(tmp_path):
    path = write_test_video(tmp_path / "short.mp4", seconds=1.0).path
    expect_media_error(
        lambda p: read_video(p, 10, (64, 64), start=5.0), path, match="no video frames from 5 s on"
    )
    expect_media_error(lambda p: read_audio(p, 16000, start=5.0), path, match="no audio from 5 s on")
