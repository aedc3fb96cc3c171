"""The bundled demo model, run the way a user runs it, keeps sound and picture together (issue 7's targets).

Through the real pipelines (benchmarks/demo_quality.py's measurement, on 8-12 clips rather than 64): `mmgen
soundtrack` on held-out clips of the flash-and-tone world puts a tone of the disc's pitch on each flash, and
`mmgen generate` makes clips with one disc and 1-3 flashes, each with a tone of the disc's pitch. Seeded, so a
regression in the model, its registry settings or a sampler shows up as a drop below the targets.
"""

from __future__ import annotations

import pytest
from test_demo_quality import _benchmark

from mmgen.pipelines.session import keep_loaded

CLIPS = 12
# Generated clips: 8 (seeds 0-7) score 1.0 on all three, as 12 did (measured 2026-12-01): one ill-formed clip of 8
# still passes (0.875 ≥ 0.8), and a drop to the chance levels (F1 0.31, colour/pitch 0.63 here) fails.
GENERATED = 8


@pytest.fixture(scope="module")
def quality():
    return _benchmark()


def test_a_soundtrack_puts_a_tone_of_the_discs_pitch_on_every_flash(quality, tmp_path):
    folder = quality.held_out_clips("demo", None, CLIPS, world_seed=2, workdir=tmp_path)
    with keep_loaded():  # the demo loaded once, not once per clip (as the benchmark runs it)
        scores = quality.video_to_audio("demo", folder, CLIPS, quality.Setting.parse("default"), seed=0,
                                        workdir=tmp_path)
    targets = quality.TARGETS["video_to_audio"]
    assert scores["model_calls_per_clip"] <= 50
    assert scores["f1"] >= targets["f1"] and scores["f1"] > scores["chance_f1"] + 0.3
    assert scores["pitch_accuracy"] >= targets["pitch_accuracy"]


def test_generated_clips_show_one_disc_that_flashes_with_a_tone_of_its_colour(quality):
    scores = quality.unconditional("demo", GENERATED, quality.Setting.parse("default"), seed=0, batch_size=GENERATED)
    targets = quality.TARGETS["unconditional"]
    assert scores["model_calls_per_clip"] <= 50
    assert scores["well_formed"] >= targets["well_formed"]
    assert scores["flash_burst_f1"] >= targets["flash_burst_f1"]
    assert scores["flash_burst_f1"] > scores["chance_flash_burst_f1"] + 0.3
    assert scores["colour_pitch"] >= targets["colour_pitch"]
