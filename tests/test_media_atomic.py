"""Outputs appear whole or not at all, and never replace a user's file unasked."""

from __future__ import annotations

import os

import pytest
import torch

from mmgen.errors import MediaError, OutputExists
from mmgen.files import atomic_output, check_writable
from mmgen.media import write_mp4


def test_a_finished_write_moves_into_place_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "clip.json"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".json" and temp != target
        temp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert os.listdir(tmp_path) == ["clip.json"]


def test_a_failure_mid_write_leaves_neither_output_nor_temporary(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="sampler blew up"), atomic_output(target) as temp:
        temp.write_bytes(b"half a file")
        raise RuntimeError("sampler blew up")
    assert os.listdir(tmp_path) == []


def test_a_clip_that_cannot_be_encoded_leaves_nothing_behind(tmp_path):
    video, audio = torch.zeros(4, 3, 16, 16), torch.zeros(1, 4000)
    with pytest.raises(MediaError, match="(?i)AAC cannot store 12345 Hz"):
        write_mp4(tmp_path / "clip.mp4", video, audio, 10, 12345)
    with pytest.raises(ValueError, match="NaN"):
        write_mp4(tmp_path / "clip.mp4", video, audio * float("nan"), 10, 16000)
    assert os.listdir(tmp_path) == []


def test_an_existing_output_is_kept_unless_overwrite_is_given(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"my holiday video")
    with pytest.raises(OutputExists, match="clip.mp4 already exists") as caught:
        write_mp4(target, torch.zeros(2, 3, 16, 16), None, 10, 16000)
    assert caught.value.exit_code == 2
    assert target.read_bytes() == b"my holiday video"

    write_mp4(target, torch.zeros(2, 3, 16, 16), None, 10, 16000, overwrite=True)
    assert target.read_bytes()[4:8] == b"ftyp"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_unwritable_places_are_refused_before_any_work(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        check_writable(tmp_path / "no-such-dir" / "clip.mp4")
    with pytest.raises(MediaError, match="is a directory"):
        check_writable(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(MediaError, match="not writable"):
            check_writable(locked / "clip.mp4")
    finally:
        locked.chmod(0o700)
