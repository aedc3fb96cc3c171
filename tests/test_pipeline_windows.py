"""Any-length soundtrack/animate: a long input is made in model-length windows that continue one another — each
window after the first is conditioned on the end of what came before (replacement over the overlap), the overlap
is crossfaded, and the result is cut back to the input's length."""

from __future__ import annotations

import torch

from mmgen.modal import Modal
from mmgen.pipelines.sampling import window_sampler
from mmgen.pipelines.session import load, prepare
from mmgen.pipelines.settings import SoundtrackSettings
from mmgen.pipelines.windows import (
    crossfade_into,
    generate_continuous,
    plan_windows,
    tracks_for,
)

FRAMES, SAMPLES = 16, 25600  # one model window: 16 frames, 1.6 s at 16 kHz
PER_FRAME = SAMPLES // FRAMES
TRACKS = tracks_for(FRAMES, SAMPLES)


def test_windows_cover_the_input_and_share_the_overlap():
    plan = plan_windows(73, FRAMES, 0.25)  # 7.3 s at 10 fps
    assert [w.start for w in plan] == [0, 12, 24, 36, 48, 60]
    assert [w.overlap for w in plan] == [0, 4, 4, 4, 4, 4]
    assert plan[-1].start + FRAMES >= 73
    assert [(w.start, w.overlap) for w in plan_windows(7, FRAMES, 0.25)] == [(0, 0)]  # shorter than a window


def test_the_crossfade_is_linear_from_the_old_window_to_the_new():
    out = torch.zeros(1, 1, (1 + FRAMES) * PER_FRAME)  # the whole output: one window so far, at frame 0
    out[..., :PER_FRAME] = 0.25
    new = torch.ones(1, 1, FRAMES * PER_FRAME)
    crossfade_into(out, new, TRACKS["audio"], start=1, overlap=1)
    assert (out[..., :PER_FRAME] == 0.25).all()  # before the overlap: untouched
    fade = out[0, 0, PER_FRAME : 2 * PER_FRAME]
    assert torch.allclose(fade, (torch.arange(PER_FRAME) + 0.5) / PER_FRAME)  # 0 → 1 across the overlap
    assert torch.equal(out[..., 2 * PER_FRAME :], new[..., PER_FRAME:])  # after it: the new window


def test_each_window_is_told_the_end_of_the_previous_one():
    """A stand-in sampler that keeps what it is told (as replacement guidance does) and fills the rest with its
    window's number: every later window must be told exactly the frames already made there."""
    told: list[Modal] = []

    def keep_known_fill_rest(known: Modal, masks: Modal) -> Modal:
        told.append({k: v.clone() for k, v in known.items()} | {"mask": masks.get("audio")})
        fill = torch.full((1, 1, SAMPLES), float(len(told)))
        if "audio" in masks:
            fill = masks["audio"] * known["audio"] + (1 - masks["audio"]) * fill
        return {"audio": fill, "video": known["video"]}

    video = torch.randn(1, 40, 3, 4, 4)  # 4 s of input frames
    audio = generate_continuous(keep_known_fill_rest, {"video": video}, "audio", TRACKS, FRAMES, 40, 0.25)

    plan = plan_windows(40, FRAMES, 0.25)
    assert len(told) == len(plan) == 3 and audio.shape == (1, 1, (plan[-1].start + FRAMES) * PER_FRAME)
    for k, window in enumerate(plan):
        start = window.start * PER_FRAME
        assert torch.equal(told[k]["video"], video[:, window.start : window.start + FRAMES])
        if k:
            shared = window.overlap * PER_FRAME
            assert torch.equal(told[k]["audio"][..., :shared], audio[..., start : start + shared])
            assert told[k]["mask"][..., :shared].eq(1).all() and told[k]["mask"][..., shared:].eq(0).all()
    # Stitched: window 1 everywhere up to the first seam, then each window's own fill after its overlap.
    assert audio[..., : 16 * PER_FRAME].eq(1).all()
    assert audio[..., 16 * PER_FRAME : 28 * PER_FRAME].eq(2).all()
    assert audio[..., 28 * PER_FRAME :].eq(3).all()


def test_with_a_real_model_the_new_window_takes_up_exactly_where_the_last_one_ended(tiny):
    """Replacement guidance makes each window's overlap equal to what the previous window made, so the crossfade
    joins equal signals: no seam, whatever the model generates."""
    run = prepare(SoundtrackSettings(model=str(tiny), steps=2, seed=11, device="cpu"))
    models = load(run)
    sample_window = window_sampler(run, models.base)
    made: list[Modal] = []

    def recorded(known: Modal, masks: Modal) -> Modal:
        made.append(sample_window(known, masks))
        return made[-1]

    video = torch.rand(1, 28, 3, 16, 16) * 2 - 1  # 2.8 s: two windows sharing 4 frames
    audio = generate_continuous(recorded, {"video": video}, "audio", TRACKS, FRAMES, 28, 0.25)

    first, second = (m["audio"] for m in made)
    seam, shared = 12 * PER_FRAME, 4 * PER_FRAME
    assert torch.equal(second[..., :shared], first[..., seam:])  # the overlap continues the first window
    assert not torch.equal(second[..., shared : 2 * shared], first[..., seam - shared : seam])  # new sound after it
    assert torch.equal(audio[..., : seam + shared], first)
    assert torch.equal(audio[..., seam + shared :], second[..., shared:])
