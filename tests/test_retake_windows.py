"""The retake algorithm on its own, with a stand-in sampler that records what each window was given: the
elements outside the ranges never change, every element inside is remade, the model is told exactly which
elements are known, and the seams are linear crossfades inside the ranges."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mmgen.pipelines.retake_windows import regenerate, seam_weights
from mmgen.pipelines.windows import tracks_for

FRAMES, SAMPLES = 8, 6400  # the demo model's window: 8 frames, 800 samples per frame
TRACKS = tracks_for(FRAMES, SAMPLES)


class Recorder:
    """A sampler that answers every window with a constant and remembers the masks it was given."""

    def __init__(self, make: str, value: float):
        self.make, self.value, self.masks = make, value, []

    def __call__(self, known, masks):
        self.masks.append(masks[self.make])
        return {self.make: torch.full_like(known[self.make], self.value),
                **{k: v for k, v in known.items() if k != self.make}}


def test_an_audio_retake_changes_only_the_ranges_and_fades_at_their_edges():
    seconds = 6
    audio = torch.linspace(-0.5, 0.5, seconds * 8000).reshape(1, 1, -1)
    video = torch.zeros(1, seconds * 10, 3, 16, 16)
    ranges = [(16000, 32000), (40000, 41000)]  # 2-4 s (several windows) and 5-5.125 s (one short one)
    sampler, seam = Recorder("audio", 0.9), 160
    out, windows = regenerate(sampler, {"video": video}, "audio", audio, ranges, TRACKS, FRAMES, 2, seam)

    inside = torch.zeros(audio.shape[-1], dtype=torch.bool)
    for a, b in ranges:
        inside[a:b] = True
    assert torch.equal(out[0, 0, ~inside], audio[0, 0, ~inside])  # bit for bit
    for a, b in ranges:
        assert torch.allclose(out[0, 0, a + seam : b - seam], torch.tensor(0.9))
        ramp = (out[0, 0, a : a + seam] - audio[0, 0, a : a + seam]) / (0.9 - audio[0, 0, a : a + seam])
        assert torch.allclose(ramp, (torch.arange(seam) + 0.5) / seam, atol=1e-4)
    assert windows == len(sampler.masks) == 5  # four for the 2 s, one for the short range
    first = sampler.masks[0].reshape(-1)  # the window from 1.8 s: 0.2 s known, then 0.6 s to make
    assert first[:1600].eq(1).all() and first[1600:].eq(0).all()
    second = sampler.masks[1].reshape(-1)  # from 2.3 s: known up to 20 ms before where the first stopped (2.6 s)
    assert second[:2240].eq(1).all() and second[2240:].eq(0).all()


def test_a_video_retake_is_the_same_code_along_the_frame_axis():
    video = torch.rand(1, 30, 3, 16, 16) * 2 - 1
    audio = torch.zeros(1, 1, 3 * 8000)
    out, windows = regenerate(Recorder("video", 0.3), {"audio": audio}, "video", video, [(10, 15)], TRACKS,
                              FRAMES, 2, seam=2)
    assert windows == 1
    assert torch.equal(out[:, :10], video[:, :10]) and torch.equal(out[:, 15:], video[:, 15:])
    assert torch.allclose(out[:, 12], torch.tensor(0.3))


def test_seam_weights_ramp_inside_made_runs_next_to_known_elements():
    known = torch.tensor([1, 1, 0, 0, 0, 0, 0, 1], dtype=torch.bool)
    assert torch.allclose(seam_weights(known, 2), torch.tensor([0, 0, 0.25, 0.75, 1, 0.75, 0.25, 0]))
    at_edge = torch.tensor([0, 0, 0, 1], dtype=torch.bool)  # a run at the window's start has no ramp there
    assert torch.allclose(seam_weights(at_edge, 2), torch.tensor([1, 0.75, 0.25, 0]))


def test_a_range_is_plain_ascii_seconds_and_says_what_is_wrong_with_it():
    """float() also reads "1_0" as 10, Arabic-Indic digits as numbers, "inf", signs, spaces and exponents: a range
    is what its error says, the digits 0-9 and a point, nothing else."""
    import pytest

    from mmgen.errors import UsageError
    from mmgen.pipelines.preflight import TimeRange

    assert TimeRange.parse("2:3.5") == TimeRange(2, 3.5) and TimeRange.parse(".5:10.") == TimeRange(0.5, 10)
    for text in ["0:inf", "nan:1", "0:1e999", "1_0:2", "\u0660:\u0660.\u0665", "-1:2", "+0:1", "-0:1", " 0:1",
                 "0: 1", "0:1\n", "0:1e-1", "0:1E1", "0x1:2", "0:.", ":1", "1:2:3"]:
        with pytest.raises(UsageError, match=re.escape(f"written with the digits 0-9 and a point (e.g. 2:3.5), "
                                                       f"got {text!r}")):
            TimeRange.parse(text)
    for text, says in [("0:" + "9" * 400, "the end must be a finite number of seconds"),
                       ("2:1", "the end must come after the start"), ("1:1.0", "the end must come after the start")]:
        with pytest.raises(UsageError, match=re.escape(says)):
            TimeRange.parse(text)


def test_overlapping_ranges_are_refused_and_ranges_that_meet_are_one():
    import pytest

    from mmgen.errors import UsageError
    from mmgen.pipelines.preflight import TimeRange, check_ranges

    seconds = {"audio": (0.0, 9.0), "video": (0.0, 9.0)}
    assert check_ranges(["2:3", "1:2"], seconds, "audio", Path("x.mp4")) == [TimeRange(1, 3)]
    with pytest.raises(UsageError, match=re.escape("ranges: 0.2:0.4 and 0.3:0.5 overlap (give each second "
                                                   "once: 0.2:0.5 for both)")):
        check_ranges(["0.3:0.5", "0.2:0.4"], seconds, "audio", Path("x.mp4"))
