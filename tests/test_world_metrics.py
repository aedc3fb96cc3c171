"""The world's metrics give perfect scores to the truth, chance to mismatched audio, and survive mp4 encoding."""

from __future__ import annotations

import pytest
import torch

from mmgen.data.synthetic import PITCH_HZ, WorldConfig, read_labels, render_batch, write_dataset
from mmgen.data.world_metrics import (
    Burst,
    VideoAnalysis,
    analyse_video,
    detect_bursts,
    event_f1,
    nearest_colour,
    pitch_accuracy,
    score_unconditional,
    score_video_to_audio,
)

SMALL = WorldConfig(frames=8, size=16, sample_rate=8000)
SHIPPED = WorldConfig(frames=16, size=32, sample_rate=16000)


def batch(config: WorldConfig, n: int, seed: int):
    clips = render_batch(config, n, seed)
    return clips, torch.stack([c.video for c in clips]), torch.stack([c.audio for c in clips])


def rates(config: WorldConfig) -> dict:
    return {"sample_rate": config.sample_rate, "fps": config.fps}


@pytest.mark.parametrize("config", [SMALL, SHIPPED], ids=["8f-16px-8k", "16f-32px-16k"])
def test_ground_truth_clips_score_perfectly_and_mismatched_audio_scores_near_chance(config):
    clips, video, audio = batch(config, 64, seed=11)

    v2a = score_video_to_audio(audio, clips, **rates(config))
    assert (v2a["f1"], v2a["pitch_accuracy"], v2a["n"]) == (1.0, 1.0, 64)
    # Chance: each clip's audio scored against the next clip. Pitches agree when colours happen to (~1/4);
    # events when frames happen to (~2 of F frames).
    assert v2a["chance_pitch_accuracy"] < 0.45
    assert v2a["chance_f1"] < (0.45 if config.frames == 8 else 0.3)

    joint = score_unconditional(video, audio, **rates(config))
    assert (joint["well_formed"], joint["flash_burst_f1"], joint["colour_pitch"]) == (1.0, 1.0, 1.0)
    assert joint["chance_flash_burst_f1"] < 0.45 and joint["chance_colour_pitch"] < 0.45


def test_every_ground_truth_clip_is_analysed_exactly():
    for clip in render_batch(SHIPPED, 16, seed=4):
        analysis = analyse_video(clip.video)
        assert (analysis.discs, analysis.colour, analysis.flash_frames) == (1, clip.colour, clip.event_frames)
        bursts = detect_bursts(clip.audio, SHIPPED.sample_rate, SHIPPED.fps, SHIPPED.frames)
        assert [b.frame for b in bursts] == clip.event_frames
        assert all(b.freq_hz == pytest.approx(clip.pitch_hz, rel=0.02) for b in bursts)


def test_silence_noise_and_late_bursts_score_low():
    clips, _, audio = batch(SMALL, 32, seed=12)
    silent = score_video_to_audio(torch.zeros_like(audio), clips, **rates(SMALL))
    assert (silent["f1"], silent["pitch_accuracy"]) == (0.0, 0.0)

    noise = torch.randn(audio.shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1) * 0.5
    assert score_video_to_audio(noise, clips, **rates(SMALL))["f1"] < 0.1

    one_frame_late = torch.roll(audio, SMALL.sample_rate // 10, dims=-1)
    assert score_video_to_audio(one_frame_late, clips, **rates(SMALL))["f1"] < 0.1

    with_hiss = audio + 0.02 * torch.randn(audio.shape, generator=torch.Generator().manual_seed(1))
    assert score_video_to_audio(with_hiss, clips, **rates(SMALL))["f1"] == 1.0


def test_a_burst_in_the_wrong_key_is_found_on_time_but_scored_off_pitch():
    clips = render_batch(SMALL, 40, seed=3)
    clip = next(c for c in clips if c.colour == "red")
    blue = next(c for c in clips if c.colour == "blue")
    retuned = torch.zeros_like(clip.audio)
    # Move the blue clip's first burst onto the red clip's first event frame.
    spf = SMALL.sample_rate // 10
    src, dst = blue.event_frames[0] * spf, clip.event_frames[0] * spf
    retuned[0, dst : dst + spf] = blue.audio[0, src : src + spf]
    bursts = detect_bursts(retuned, SMALL.sample_rate, SMALL.fps, SMALL.frames)
    assert [b.frame for b in bursts] == clip.event_frames[:1]
    assert nearest_colour(bursts[0].freq_hz) == "blue"
    assert pitch_accuracy(bursts, "red") == 0.0 and pitch_accuracy(bursts, "blue") == 1.0


def test_video_analysis_counts_discs_and_reports_an_empty_frame_as_empty():
    clips = render_batch(SMALL, 40, seed=21)
    grey = -0.8  # background 0.1 on the [-1, 1] scale
    assert analyse_video(torch.full_like(clips[0].video, grey)) == VideoAnalysis(
        discs=0, colour=None, flash_frames=[]
    )

    def distance(a, b) -> float:
        return ((a.centre[0] - b.centre[0]) ** 2 + (a.centre[1] - b.centre[1]) ** 2) ** 0.5

    a, b = max(((a, b) for a in clips for b in clips), key=lambda pair: distance(*pair))
    assert distance(a, b) > 2 * 0.22 * 16 + 2  # the discs do not touch, even flashing
    two_discs = a.video + b.video - grey  # both discs on one background
    assert analyse_video(two_discs).discs == 2


def test_event_f1_and_pitch_rules_on_edge_cases():
    assert event_f1([], []) == 1.0  # nothing to find, nothing claimed
    assert event_f1([3], []) == 0.0 and event_f1([], [3]) == 0.0
    assert event_f1([1, 5], [1, 7]) == 0.5
    assert pitch_accuracy([], "red") == 0.0  # silence never has the right pitch
    assert [nearest_colour(PITCH_HZ[c] * 1.1) for c in PITCH_HZ] == list(PITCH_HZ)
    assert nearest_colour(1030) == "yellow"  # nearer 800 Hz in Hz, but nearer 1300 Hz in pitch
    assert pitch_accuracy([Burst(0, 310.0, 0.2), Burst(2, 790.0, 0.2)], "red") == 0.5


def test_metrics_survive_an_mp4_round_trip(tmp_path):
    from mmgen.media import read_audio, read_video

    for config, n in [(SMALL, 8), (SHIPPED, 4)]:
        out = tmp_path / f"{config.size}"
        write_dataset(out, config, n, seed=31)
        labels = read_labels(out)
        video = torch.stack(
            [read_video(out / lab.file, config.fps, (config.size, config.size)) for lab in labels]
        )
        audio = torch.stack([read_audio(out / lab.file, config.sample_rate) for lab in labels])
        assert video.shape == (n, config.frames, 3, config.size, config.size)
        audio = audio[..., : config.samples]

        v2a = score_video_to_audio(audio, labels, **rates(config))
        joint = score_unconditional(video, audio, **rates(config))
        assert v2a["f1"] >= 0.95 and v2a["pitch_accuracy"] >= 0.95, v2a
        assert min(joint["well_formed"], joint["flash_burst_f1"], joint["colour_pitch"]) >= 0.95, joint
        assert [analyse_video(v).colour for v in video] == [lab.colour for lab in labels]
