"""A sound retake holds the picture only where its windows are: it read the whole input's picture at the model's
size as float32 (1.8 GB of a 2.9 GB peak retaking a second of a 1-hour 10 fps WebM), though the windows around the
ranges are all it conditions on. Each window's picture is still the one the whole read gave, so the output is too."""

from __future__ import annotations

import pytest
import torch
from media_factory import write_test_video

from mmgen.media import fitting, read_video
from mmgen.pipelines.retake import retake
from mmgen.pipelines.settings import RetakeSettings
from mmgen.pipelines.windows import cut, tracks_for

FRAMES = 16  # the tiny model's window, in frames (10 fps, 16x16)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 s at 10 fps: 120 frames, each unlike the one before."""
    folder = tmp_path_factory.mktemp("picture")
    return write_test_video(folder / "take.mp4", seconds=12.0, fps=10, size=(16, 16)).path


def test_a_sound_retake_converts_only_the_frames_its_windows_see(clip, tiny, tmp_path, monkeypatch):
    converted = []
    fitter = fitting.FrameFitter.__call__
    monkeypatch.setattr(fitting.FrameFitter, "__call__", lambda self, frame: converted.append(1) or fitter(self, frame))
    settings = RetakeSettings(model=str(tiny), steps=1, device="cpu", seed=1, ranges=("1:1.5", "9:9.2"),
                              loudness="off", sample_rate="model")
    result = retake(clip, tmp_path / "mended.mp4", settings)
    assert result.provenance.windows == 2
    assert len(converted) <= 2 * FRAMES  # main: all 120


@pytest.mark.parametrize("starts", [[0, 4], [3, 40], [104], [110]])  # overlapping, apart, the last, padded past the end
def test_each_windows_picture_is_the_whole_reads_cut(clip, starts):
    from mmgen.pipelines.retake import picture_at  # (main had none: the test above is the one to fail there)

    whole = read_video(clip, 10.0, (16, 16))[None]
    track = tracks_for(FRAMES, 25_600)["video"]
    at = picture_at(clip, 10.0, (16, 16), 0.0, starts, FRAMES, track)
    for first in starts:
        assert torch.equal(at(first)["video"], cut(whole, track, first, FRAMES)), first
