"""What every command hands over as sound: 48 kHz in the WAV and the audio track alike, lasting exactly as long as
the video, at −16 LUFS with true peaks under −1 dBTP — measured by FFmpeg's EBU R128 meter, not mmgen's — unless
`--sample-rate model --loudness off` asks for the model's own sound. The soundtrack runs the real command; the
others run in this process (tests/cli_here.py), the files they make being the point."""

from __future__ import annotations

import importlib
import json

import av
import numpy as np
import pytest
from cli_here import run_here
from loudness_meter import ebur128
from media_factory import decode_audio, packets, write_test_audio, write_test_video
from mmgen_cli import mmgen_env, run_mmgen
from tiny_model import save_tiny_model

from mmgen.media import probe

RATE = 48000


def wav_samples(path) -> np.ndarray:
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.sample_rate == RATE
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]) / 32768


def aac_seconds(path) -> float:
    """How long the audio track plays: its decoded samples, priming dropped, as a player counts them."""
    sound, rate = decode_audio(path)
    assert rate == RATE
    return sound.shape[1] / rate


def test_a_soundtrack_is_delivered_at_48k_and_minus_16_lufs_exactly_as_long_as_the_video(tiny, tmp_path):
    clip = write_test_video(tmp_path / "walk.mp4", seconds=3.3, fps=30, size=(120, 160))
    out = tmp_path / "walk_scored.mp4"
    done = run_mmgen("soundtrack", clip.path, "-o", out, "-m", tiny, "--steps", "2", "--wav", "--json",
                     env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr

    wav = wav_samples(out.with_suffix(".wav"))
    assert len(wav) == round(3.3 * RATE)  # to the sample
    lufs, peak = ebur128(wav, RATE)
    assert lufs == pytest.approx(-16.0, abs=0.5) and peak <= -1.0
    assert packets(out, "video") == packets(clip.path, "video")
    assert probe(out).sample_rate == RATE
    assert 3.3 <= aac_seconds(out) <= 3.3 + 1024 / RATE  # the decoder also gives the last AAC frame's padding
    assert ebur128(decode_audio(out)[0][0], RATE)[0] == pytest.approx(-16.0, abs=0.5)
    record = json.loads(done.stdout)
    assert record["delivery"]["sample_rate"] == RATE and record["delivery"]["lufs_after"] == pytest.approx(-16, abs=0.1)
    assert record["delivery"]["lufs_before"] != record["delivery"]["lufs_after"]


def test_generated_clips_are_delivered_at_48k_and_minus_16_lufs(tiny, tmp_path):
    done = run_here("generate", "-m", tiny, "--steps", "2", "--seed", "1", "-o", tmp_path / "out", "--json",
                    "--no-previews", env=mmgen_env(tmp_path))  # in this process: what is made is the point
    assert done.returncode == 0, done.stderr
    mp4 = tmp_path / "out" / "clip_0000.mp4"
    assert probe(mp4).sample_rate == RATE
    assert 1.6 <= aac_seconds(mp4) <= 1.6 + 1024 / RATE  # the tiny model's clip: 16 frames at 10 fps
    assert ebur128(decode_audio(mp4)[0][0], RATE)[0] == pytest.approx(-16.0, abs=0.5)
    assert json.loads(done.stdout)["delivery"]["loudness_target"] == -16.0


def test_a_demo_clips_sidecar_says_how_loud_its_file_plays(tmp_path):
    # FFmpeg's fast AAC coder played seed 3's clip at −16.47 LUFS while its sidecar said −16.0; seed 4's at 6 steps
    # (a quarter of the demo's 25: its sound already clean enough to lose level so) at −16.78, at 192k and 256k alike
    done = run_here("generate", "--seed", "4", "--steps", "6", "-o", tmp_path / "out", "--json", "--no-previews",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    heard, rate = decode_audio(tmp_path / "out" / "clip_0000.mp4")
    record = json.loads(done.stdout)["delivery"]
    assert record["lufs_after"] == pytest.approx(ebur128(heard[0], rate)[0], abs=0.2)
    assert record["lufs_after"] == pytest.approx(-16.0, abs=0.2)


def test_an_animation_copies_the_sound_unless_asked_to_deliver_it(tiny, tmp_path):
    song = write_test_audio(tmp_path / "song.m4a", seconds=2.0, sample_rate=44100)
    kept, loud = tmp_path / "kept.mp4", tmp_path / "loud.mp4"
    for out, extra in ((kept, []), (loud, ["--loudness", "-16", "--sample-rate", "48000"])):
        done = run_here("animate", song.path, "-o", out, "-m", tiny, "--steps", "2", *extra, env=mmgen_env(tmp_path))
        assert done.returncode == 0, done.stderr
    assert packets(kept, "audio") == packets(song.path, "audio")[: len(packets(kept, "audio"))]
    assert probe(loud).sample_rate == RATE
    assert ebur128(decode_audio(loud)[0][0], RATE)[0] == pytest.approx(-16.0, abs=0.5)


def test_a_models_own_rate_the_output_cannot_store_goes_in_at_the_next_rate_up_as_a_kept_sound_does(tmp_path):
    """`--sample-rate model` with a model made at 7 kHz (AAC stores no 7 kHz) failed after all the sampling (`aac
    cannot store 7000 Hz audio`). `model` keeps a rate of the sound's own, as animate keeps its input's: where the
    output cannot store it, the nearest rate above that it can (an explicit rate it cannot store is refused up
    front instead), and a note says so; the file and the sidecar say that one rate."""
    model = save_tiny_model(tmp_path / "odd.safetensors", sample_rate=7000, audio_size=(1, 11200))  # 1.6 s
    done = run_here("generate", "-m", model, "--steps", "1", "--sample-rate", "model", "-o", tmp_path / "out",
                    "--json", "--no-previews", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "the model's 7,000 Hz sound goes into clip_0000.mp4 at 8,000 Hz (aac in mp4 stores no 7,000 Hz)" in done.stderr
    sidecar = json.loads(done.stdout)
    assert sidecar["sample_rate"] == sidecar["delivery"]["sample_rate"] == 8000
    assert decode_audio(tmp_path / "out" / "clip_0000.mp4")[1] == 8000


@pytest.mark.parametrize("peaks", [(1.5, 3.0), (0.5, 1.0)])
def test_the_models_sound_clamped_as_sampled_is_said_once_as_the_models(tmp_path, monkeypatch, peaks):
    """The model's sound past full scale as sampled (no per-step clipping: the paper's preset) is clamped to ±1 as
    the official code does, before delivery: that was said nowhere, even where `--loudness -16` then leaves the
    file well under full scale. It is said once, as the command ends, with the loudest clip's peak and how many
    clips, as the model's; a sound within ±1 is said nothing of."""
    generating = importlib.import_module("mmgen.pipelines.generate")  # the package names its function so
    real, peak = generating.sample_clips, iter(peaks)

    def louder(*args, **kwargs):  # the model's sound brought to each peak in turn, as it leaves the sampler
        out = real(*args, **kwargs)
        return {**out, "audio": out["audio"] / out["audio"].abs().max() * next(peak)}

    monkeypatch.setattr(generating, "sample_clips", louder)
    done = run_here("generate", "-n", "2", "--steps", "1", "--no-previews", "-o", tmp_path / "out",
                    env=mmgen_env(tmp_path))  # the demo model: small, quick; delivered at -16 LUFS
    assert done.returncode == 0, done.stderr
    clamped = [line for line in done.stderr.splitlines() if "at full scale" in line]  # (the tmp path says "clamped")
    assert clamped == ([] if max(peaks) <= 1 else [
        "the model's sound peaks at up to +9.5 dBFS as sampled and is clamped at full scale in 2 of the clips made, "
        "before delivery, as the paper's code does; sampling that clips each step (clip_denoised: true, every "
        "sampling preset but paper) keeps it within full scale"]), done.stderr.splitlines()


def test_clips_whose_sound_clips_are_said_once_with_the_loudest_peak(tmp_path, monkeypatch):
    """`generate -n 2 --loudness off` whose clips' sound passes full scale said so once, with the FIRST clip's peak;
    it is said once, as the command ends, with the loudest clip's peak and how many files are clipped."""
    generating = importlib.import_module("mmgen.pipelines.generate")  # the package names its function so

    real, peaks = generating.deliver, iter([1.5, 3.0])

    def louder(audio, *args, **kwargs):  # the model's sound brought to each peak in turn
        return real(audio / audio.abs().max() * next(peaks), *args, **kwargs)

    monkeypatch.setattr(generating, "deliver", louder)
    done = run_here("generate", "-n", "2", "--steps", "1", "--loudness", "off", "--sample-rate", "model",
                    "--no-previews", "-o", tmp_path / "out", env=mmgen_env(tmp_path))  # the demo model: small, quick
    assert done.returncode == 0, done.stderr
    clipped = [line for line in done.stderr.splitlines() if "clipped at full scale" in line]  # a note: logged (stderr)
    assert clipped == ["the sound peaks at up to +9.5 dBFS and is clipped at full scale in 2 of the files written; "
                       "--loudness -16 (the default) keeps it under -1 dBTP"], done.stderr.splitlines()


def test_a_limited_sound_that_misses_its_loudness_target_says_so_as_a_one_gain_sound_does(tmp_path):
    """generate/soundtrack keep the limiter: asked for a level it cannot reach (`--loudness -5`, peaks held under
    −1 dBTP) the clip landed a dB or more under it without a word, while retake/animate (one gain) said so. Said
    the same way, with the level the sidecar records."""
    done = run_here("generate", "--steps", "1", "--loudness", "-5", "--no-previews", "--json", "-o", tmp_path / "out",
                    env=mmgen_env(tmp_path))  # the demo model: small, quick
    assert done.returncode == 0, done.stderr
    reached = json.loads(done.stdout)["delivery"]["lufs_after"]
    assert reached <= -5.5
    assert (f"the sound is brought to {reached:.1f} LUFS, {-5 - reached:.1f} LU short of --loudness -5: its peaks are "
            "limited to keep its true peak under -1 dBTP") in done.stderr, done.stderr
