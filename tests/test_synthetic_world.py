"""The flash-and-tone world renders what its spec says, deterministically, and writes a finetune-ready folder."""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise

import pytest
import torch

from mmgen.data.synthetic import (
    BACKGROUND,
    COLOURS,
    PITCH_HZ,
    WorldConfig,
    read_labels,
    render_batch,
    render_clip,
    write_dataset,
)
from mmgen.errors import ConfigError, OutputExists

SMALL = WorldConfig(frames=8, size=16, sample_rate=8000)
SHIPPED = WorldConfig(frames=16, size=32, sample_rate=16000)


def to_unit(video: torch.Tensor) -> torch.Tensor:
    return (video.double() + 1) / 2


def disc_area(frame: torch.Tensor, colour: torch.Tensor) -> float:
    """Pixels covered by a disc of `colour` in `frame` (3, H, W) on 0..1, counting edge pixels fractionally."""
    strongest = int((colour - BACKGROUND).abs().argmax())
    return float(((frame[strongest] - BACKGROUND) / (colour[strongest] - BACKGROUND)).sum())


def test_a_clip_is_a_dim_disc_on_grey_that_flashes_bigger_and_brighter_on_its_event_frames():
    clip = render_batch(SHIPPED, 1, seed=3)[0]
    video = to_unit(clip.video)  # (F, 3, H, W)
    assert clip.video.shape == (16, 3, 32, 32) and clip.video.dtype == torch.float32
    full = torch.tensor(COLOURS[clip.colour], dtype=torch.float64)
    dim = 0.55 * full + 0.45 * BACKGROUND

    y, x = clip.centre
    margin = 0.22 * 32  # fully inside the frame, even flashing
    assert margin <= y <= 32 - margin and margin <= x <= 32 - margin
    cy, cx = int(y), int(x)
    rows, cols = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    far = ((rows - y) ** 2 + (cols - x) ** 2).sqrt() > 0.22 * 32 + 1  # well outside even the flash disc

    for f in range(16):
        frame = video[f]
        assert torch.allclose(frame[:, far], torch.tensor(BACKGROUND, dtype=torch.float64), atol=1e-6)
        flashing = f in clip.event_frames
        expected_rgb, expected_radius = (full, 0.22) if flashing else (dim, 0.16)
        assert torch.allclose(frame[:, cy, cx], expected_rgb, atol=1e-6)
        radius = math.sqrt(disc_area(frame, expected_rgb) / math.pi) / 32
        assert radius == pytest.approx(expected_radius, rel=0.03)


def test_the_disc_edge_is_anti_aliased():
    clip = render_batch(SMALL, 1, seed=0)[0]
    frame = to_unit(clip.video[0])
    levels = frame.reshape(3, -1).T.unique(dim=0)
    assert len(levels) > 3  # background, disc and several partly covered edge pixels in between


def test_events_are_one_to_three_never_adjacent_and_every_colour_and_count_occurs():
    clips = render_batch(SMALL, 200, seed=1)
    for clip in clips:
        assert 1 <= len(clip.event_frames) <= 3
        assert clip.event_frames == sorted(clip.event_frames)
        assert all(b - a >= 2 for a, b in pairwise(clip.event_frames))
        assert all(0 <= f < SMALL.frames for f in clip.event_frames)
    assert {len(c.event_frames) for c in clips} == {1, 2, 3}
    assert {c.colour for c in clips} == set(COLOURS)
    assert {f for c in clips for f in c.event_frames} == set(range(SMALL.frames))  # first and last frame too


@pytest.mark.parametrize("config", [SMALL, SHIPPED], ids=["8k", "16k"])
def test_each_event_sounds_a_burst_at_its_frame_start_with_the_colours_pitch_and_silence_elsewhere(config):
    clips = render_batch(config, 24, seed=2)
    assert {c.colour for c in clips} == set(COLOURS)
    burst_len = round(0.080 * config.sample_rate)
    for clip in clips:
        audio = clip.audio[0].double()
        assert clip.audio.shape == (1, config.frames * config.sample_rate // 10)
        sounding = torch.zeros_like(audio, dtype=torch.bool)
        for f in clip.event_frames:
            start = round(f * config.sample_rate / config.fps)
            segment = audio[start : start + burst_len]
            nonzero = segment.nonzero().flatten()
            assert int(nonzero[0]) <= 1  # onset at the frame's first sample (sin(0) = 0 there)
            assert int(nonzero[-1]) >= burst_len - 2  # 80 ms long
            assert float(segment.abs().max()) <= 0.7
            # The envelope, read off where the sine is far from zero: 2 ms linear attack to 0.7, then tau 25 ms.
            t = torch.arange(burst_len, dtype=torch.float64) / config.sample_rate
            sine = torch.sin(2 * math.pi * PITCH_HZ[clip.colour] * t)
            readable = sine.abs() > 0.3
            envelope = segment[readable] / sine[readable]
            expected = 0.7 * torch.minimum(t / 0.002, torch.exp(-(t - 0.002) / 0.025).clamp(max=1))[readable]
            assert torch.allclose(envelope, expected, atol=1e-5)
            assert float(envelope.max()) == pytest.approx(0.7, abs=0.02)
            spectrum = torch.fft.rfft(segment, n=4 * config.sample_rate).abs()  # 0.25 Hz bins
            peak_hz = int(spectrum.argmax()) / 4
            assert peak_hz == pytest.approx(PITCH_HZ[clip.colour], abs=2.0)
            sounding[start : start + burst_len] = True
        assert torch.count_nonzero(audio[~sounding]) == 0  # exactly silent elsewhere


def test_the_same_seed_gives_the_same_clips_and_more_clips_extend_the_list():
    a, b = render_batch(SMALL, 5, seed=7), render_batch(SMALL, 8, seed=7)
    for x, y in zip(a, b[:5], strict=True):
        assert torch.equal(x.video, y.video) and torch.equal(x.audio, y.audio)
        assert (x.colour, x.centre, x.event_frames) == (y.colour, y.centre, y.event_frames)
    other = render_clip(SMALL, torch.Generator().manual_seed(8))
    assert not torch.equal(other.video, a[0].video)


def test_world_sizes_are_checked():
    with pytest.raises(ConfigError, match="even"):
        WorldConfig(size=15)
    with pytest.raises(ConfigError, match="non-adjacent"):
        WorldConfig(frames=4)
    with pytest.raises(ConfigError, match="sample_rate"):
        WorldConfig(sample_rate=2000)


def test_write_dataset_makes_a_folder_of_mp4s_with_labels_and_refuses_to_overwrite_it(tmp_path):
    from mmgen.media import probe

    out = tmp_path / "world"
    seen = []
    write_dataset(out, SMALL, 3, seed=5, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["clip_00000.mp4", "clip_00001.mp4", "clip_00002.mp4"]

    labels = read_labels(out)
    for label, clip in zip(labels, render_batch(SMALL, 3, seed=5), strict=True):
        assert label.centre == clip.centre and label.event_frames == clip.event_frames
        assert label.colour == clip.colour and label.pitch_hz == PITCH_HZ[clip.colour]
        info = probe(out / label.file)
        assert (info.has_video, info.has_audio, info.width, info.height) == (True, True, 16, 16)
        assert (info.video_codec, info.audio_codec, info.sample_rate) == ("h264", "aac", 8000)
        assert info.frames == 8 and info.fps == pytest.approx(10.0)
    assert json.loads((out / "world.json").read_text())["frames"] == 8

    with pytest.raises(OutputExists):
        write_dataset(out, SMALL, 3, seed=6)
    assert read_labels(out) == labels


def test_a_world_with_two_pitches_swapped_sounds_and_scores_by_its_own_mapping():
    from mmgen.data.world_metrics import detect_bursts, score_video_to_audio

    swapped = SMALL.swap_pitches("red", "blue")
    assert swapped.pitch_hz == {**PITCH_HZ, "red": 800.0, "blue": 300.0} and SMALL.pitch_hz == PITCH_HZ
    clips = render_batch(swapped, 24, seed=5)
    same_draws = render_batch(SMALL, 24, seed=5)
    assert [c.colour for c in clips] == [c.colour for c in same_draws]  # only the sound changed
    for clip in clips:
        bursts = detect_bursts(clip.audio, swapped.sample_rate, swapped.fps, swapped.frames)
        assert all(b.freq_hz == pytest.approx(swapped.pitch_hz[clip.colour], rel=0.03) for b in bursts)
    audio = [c.audio for c in clips]
    kwargs = dict(sample_rate=swapped.sample_rate, fps=swapped.fps)
    assert score_video_to_audio(audio, clips, pitch_hz=swapped.pitch_hz, **kwargs)["pitch_accuracy"] == 1.0
    moved = [c for c in clips if c.colour in ("red", "blue")]
    old_world = score_video_to_audio([c.audio for c in moved], moved, **kwargs)  # judged by the old mapping
    assert old_world["pitch_accuracy"] == 0.0
    with pytest.raises(ConfigError, match="cannot swap"):
        SMALL.swap_pitches("red", "purple")


def test_its_command_writes_progress_to_a_pipe_as_lines_on_stderr_and_no_carriage_returns(tmp_path, capsys):
    """`python -m mmgen.data.synthetic … | cat` wrote `\\r1/3\\r2/3\\r3/3\\n` into the pipe: its progress is mmgen's
    (cli.progress: plain lines on stderr where it is no terminal), its stdout only what it wrote."""
    from mmgen.data.synthetic import _main

    _main([str(tmp_path / "world"), "--n", "3", "--frames", "8", "--size", "16", "--sample-rate", "8000"])
    said = capsys.readouterr()
    assert said.out == f"wrote 3 clips and {tmp_path / 'world' / 'labels.jsonl'}\n"
    assert "\r" not in said.err and said.err.splitlines()[0] == "clips: 1/3" and said.err.endswith("clips: 3/3\n")


def test_its_command_takes_the_number_of_clips_as_n_and_says_what_each_option_is(tmp_path, capsys):
    """The CHANGELOG's `python -m mmgen.data.synthetic -n 1` was refused (the option was `--n` alone, which still
    works); and --help said nothing of --n, --seed, --frames, --size or --sample-rate."""
    from mmgen.data.synthetic import _main

    _main([str(tmp_path / "world"), "-n", "1", "--frames", "8", "--size", "16", "--sample-rate", "8000"])
    assert capsys.readouterr().out == f"wrote 1 clip and {tmp_path / 'world' / 'labels.jsonl'}\n"
    with pytest.raises(SystemExit):
        _main(["--help"])
    said = capsys.readouterr().out
    entries = re.split(r"\n  (?=-)", said[said.index("options:"):])[1:]  # one per option: its flags, its text
    described = {entry.split("  ")[0]: " ".join(entry[len(entry.split("  ")[0]):].split()) for entry in entries}
    assert "-n N, --num N" in described
    assert all(described.values()), described
