"""`mmgen animate sound.wav`: a sound of any length gets a picture, and keeps playing exactly as it was.

The real `mmgen` command runs in a subprocess on a tiny random model (2 steps); the runs whose output alone is
the point run in the test's process (tests/cli_here.py).
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from cli_here import run_here
from media_factory import (
    audio_stream_seconds,
    decode_audio,
    decode_frames,
    packets,
    pattern_audio,
    stream_kinds,
    write_late_streams,
    write_pcm_wav,
    write_test_audio,
    write_test_wav,
)
from mmgen_cli import mmgen_env, run_mmgen

from mmgen.errors import MediaError
from mmgen.media import probe
from mmgen.media.decode import read_audio
from mmgen.pipelines import animate
from mmgen.pipelines.settings import AnimateSettings

RATE = 16000
CLICK_AT = 1.25


@pytest.fixture(scope="module")
def animated(tiny, tmp_path_factory):
    """A 3.1 s wav (440 Hz tone, a click at 1.25 s) animated with --json: (the wav, the finished process)."""
    root = tmp_path_factory.mktemp("animate")
    sound = write_test_wav(root / "sound.wav", seconds=3.1, click_at=CLICK_AT)
    done = run_mmgen("animate", sound.path, "-m", tiny, "--steps", "2", "--seed", "5", "--json",
                     env=mmgen_env(tmp_path_factory.mktemp("home")))
    assert done.returncode == 0, done.stderr
    return sound, done


def test_the_video_is_as_long_as_the_sound(animated):
    sound, _ = animated
    out = sound.path.with_name("sound_animate.mp4")
    assert sorted(p.name for p in out.parent.iterdir()) == ["sound.wav", "sound_animate.json", "sound_animate.mp4"]
    assert stream_kinds(out) == ["video", "audio"]
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == 10
    assert decode_frames(out).shape == (31, 16, 16, 3)  # 3.1 s at the model's 10 fps and 16×16


def test_the_original_sound_plays_unchanged_and_on_time(animated):
    """A wav's PCM cannot go into an mp4 as is, so it is re-encoded (AAC); it must still be the same sound,
    with the click where it was (no encoder delay)."""
    sound, _ = animated
    out = sound.path.with_name("sound_animate.mp4")
    assert audio_stream_seconds(out) == pytest.approx(3.1, abs=0.05)
    played, rate = decode_audio(out)
    assert rate == RATE
    original = sound.audio[0]
    n = 3 * RATE
    assert np.corrcoef(played[0, :n], original[:n])[0, 1] > 0.99
    assert np.abs(played[0]).argmax() / RATE == pytest.approx(CLICK_AT, abs=0.002)


def test_sidecar_and_json_say_how_the_video_was_made(animated):
    sound, done = animated
    sidecar = json.loads(sound.path.with_name("sound_animate.json").read_text())
    assert [json.loads(line) for line in done.stdout.splitlines()] == [sidecar]
    assert sidecar["windows"] == 3  # 31 frames in windows of 16 sharing 4: 16 + 2·12 ≥ 31
    assert (sidecar["seed"], sidecar["guidance"], sidecar["input"]) == (5, "replacement", str(sound.path))
    assert (sidecar["frames"], sidecar["width"], sidecar["height"]) == (31, 16, 16)


@pytest.mark.parametrize(("rate", "suffix", "stored", "decoded"), [(4000, ".mp4", 8000, 8000),
                                                            (44100, ".webm", 48000, 48000),
                                                            (4000, ".webm", 48000, 48000)])
def test_a_sound_at_a_rate_its_container_cannot_store_is_re_encoded_at_the_next_rate_up(tiny, tmp_path, rate,
                                                                                    suffix, stored, decoded):
    """A 4 kHz WAV passes the input limit, but AAC stores no 4 kHz (nor Opus 44.1 kHz): `animate` failed after all
    the sampling (`aac cannot store 4000 Hz audio`). The kept sound is re-encoded at the nearest rate above that the
    container stores — nothing of it lost, still on time — and the note says so. Opus is decoded at 48 kHz from any
    rate it was encoded at: a 4 kHz sound goes into a WebM at 48 kHz, not at the 8 kHz the note once said while
    the summary and the sidecar said 48 kHz."""
    from cli_here import run_here

    sound = write_test_wav(tmp_path / "low.wav", seconds=1.0, sample_rate=rate, tone_hz=300, click_at=0.4)
    out = tmp_path / f"low{suffix}"
    done = run_here("animate", sound.path, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert f"re-encoding it at {stored:,} Hz ({suffix[1:]} stores no {rate:,} Hz)" in done.stderr
    played, read_rate = decode_audio(out)
    assert read_rate == decoded and 1.0 <= played.shape[1] / decoded <= 1.0 + 1024 / decoded  # an AAC frame's padding
    assert np.abs(played[0]).argmax() / decoded == pytest.approx(0.4, abs=0.003)


def test_a_re_encoded_sound_ends_with_the_picture_not_with_its_last_decoded_frame(tiny, tmp_path):
    """An AAC source decodes with its last frame whole, padding and all (up to 1023 samples past its end: 128 ms at
    8 kHz); re-encoded into a WebM, that ran on 124 ms past a 0.9 s picture, more than a frame at 10 fps. The kept
    sound is cut to the sample where the picture ends."""
    voice = write_test_audio(tmp_path / "voice.m4a", seconds=0.9, sample_rate=8000, tone_hz=300)
    out = tmp_path / "voice.webm"
    done = run_here("animate", voice.path, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    played, rate = decode_audio(out)
    assert decode_frames(out).shape[0] == 9 and played.shape[1] / rate == pytest.approx(0.9, abs=1 / rate)


def test_an_ogg_opus_sound_is_as_long_as_it_decodes(tiny, tmp_path):
    """An Ogg Opus file's header counts the encoder's pre-skip (312 samples at 48 kHz), which the decoder drops:
    1 s of sound (48,000 samples) made 11 frames, 1.1 s of picture. It makes 10, as the same sound in a WAV does."""
    sound = write_test_audio(tmp_path / "voice.ogg", seconds=1.0, sample_rate=48000, codec="libopus")
    out = tmp_path / "voice.mp4"
    done = run_here("animate", sound.path, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert decode_frames(out).shape[0] == 10


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_the_json_counts_the_frames_of_a_container_that_records_no_count(tiny, tmp_path, suffix):
    """Matroska and WebM keep no per-stream frame count: --json and the sidecar said `"frames": null` for an .mkv
    or .webm holding 10 frames (10 for an .mp4). The frames written are counted, in every container."""
    sound = write_test_wav(tmp_path / "voice.wav", seconds=1.0)
    out = tmp_path / f"voice{suffix}"
    done = run_here("animate", sound.path, "-o", out, "-m", tiny, "--steps", "1", "--json", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["frames"] == json.loads(out.with_suffix(".json").read_text())["frames"] == 10
    assert decode_frames(out).shape[0] == 10


@pytest.mark.parametrize("delivery", [[], ["--loudness", "-20"]])
def test_a_sound_that_starts_late_in_its_clip_starts_the_picture_and_sets_its_length(tiny, tmp_path, delivery):
    """An mkv whose 1.5 s of sound starts 0.5 s into its 2 s picture: the sound was read from the file's zero, its
    leading silence with it, and got 2.0 s of new picture (20 frames), the sound 0.5 s in. The input's picture is
    left out, so the output is the sound as a player plays it, from its start: 15 frames, starting with it at 0;
    copied, the sound's packets are the input's; delivered (--loudness), it has no silence in front."""
    clip = write_late_streams(tmp_path / "late.mkv", 0.0, 0.5, frames=20, audio_seconds=1.5,
                              audio_codec="pcm_s16le").path
    out = tmp_path / "late_animate.mkv"
    done = run_here("animate", clip, "-o", out, "-m", tiny, "--steps", "1", *delivery, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    info = probe(out)
    assert (info.video_start, info.audio_start) == (0.0, 0.0) and decode_frames(out).shape[0] == 15
    assert "1.50 s" in done.stderr
    played, rate = decode_audio(out)
    if not delivery:
        assert [data for _, data in packets(out, "audio")] == [data for _, data in packets(clip, "audio")]
    assert played.shape[1] / rate == pytest.approx(1.5, abs=0.03)
    assert np.abs(played[:, 2400:4800]).max() > 0.05  # the tone, from 50 ms on (past an AAC encoder's ramp)


def test_a_flac_written_to_a_pipe_is_animated_for_all_of_its_sound(tiny, tmp_path):
    """`ffmpeg ... -f flac - > talk.flac` leaves 0 samples in the FLAC's STREAMINFO (the muxer cannot go back to
    count them): it was refused as `its audio stream is empty`. Its packets say how long it is."""
    sound = write_test_audio(tmp_path / "talk.flac", seconds=1.0, sample_rate=RATE, piped=True).path
    out = tmp_path / "talk_animate.mkv"
    done = run_here("animate", sound, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert [data for _, data in packets(out, "audio")] == [data for _, data in packets(sound, "audio")]
    assert decode_frames(out).shape[0] == 10 and "1.00 s" in done.stderr


def test_a_sample_rate_the_output_cannot_store_is_refused_before_any_work(tiny, tmp_path):
    """`--sample-rate 10000` into an mp4 (or 44100 into a WebM) was refused by the encoder after all the sampling.
    Opus takes 8 kHz in, but every player decodes it at 48 kHz: `--sample-rate 8000` into a WebM was taken, and its
    sidecar said `sample_rate` 48000 beside `delivery.sample_rate` 8000. A WebM's sound is stored at 48 kHz only."""
    from cli_here import run_here

    sound = write_test_wav(tmp_path / "s.wav", seconds=1.0)
    for out, rate, says in [(tmp_path / "a.mp4", 10000, "(aac in mp4) cannot be stored at 10,000 Hz (use one of "
                                                         "8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100"),
                            (tmp_path / "a.webm", 44100, "(opus in webm) cannot be stored at 44,100 Hz (use 48000)"),
                            (tmp_path / "a.webm", 8000, "(opus in webm) cannot be stored at 8,000 Hz (use 48000)")]:
        refused = run_here("animate", sound.path, "-o", out, "--sample-rate", rate, "-m", tiny, env=mmgen_env(tmp_path))
        assert refused.returncode == 2
        assert refused.stderr.startswith(f"mmgen: error: --sample-rate {rate}: {out}'s sound {says}")
        assert len(refused.stderr.splitlines()) == 1 and "windows" not in refused.stderr  # before any sampling
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["s.wav"]


def test_aac_audio_is_copied_packet_for_packet(tiny, tmp_path):
    voice = write_test_audio(tmp_path / "voice.m4a", seconds=1.0, click_at=0.4)
    out = tmp_path / "voice.mp4"
    done = run_here("animate", voice.path, "-o", out, "-m", tiny, "--steps", "2", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    copied = [payload for _, payload in packets(out, "audio")]
    source = [payload for _, payload in packets(voice.path, "audio")]
    assert copied == source[: len(copied)] and len(copied) >= len(source) - 1
    assert decode_frames(out).shape[0] == 10


def test_a_float_wav_holding_nan_is_refused_naming_it(tiny, tmp_path):
    """It was blamed on the model: "sampling gave NaN or Inf values in the video ... (try --precision fp32)"."""
    sound = pattern_audio(0.5, RATE)
    sound[:, 3000:3100] = np.nan
    nan = write_test_audio(tmp_path / "nan.wav", codec="pcm_f32le", samples=sound).path
    done = run_here("animate", nan, "-m", tiny, "--steps", "2", "-o", f"{tmp_path / 'an'}/", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: cannot read {nan}: its audio holds NaN or Inf samples\n")
    assert not (tmp_path / "an").exists()


def test_a_float_wav_far_too_loud_to_be_sound_is_refused_naming_it(tiny, tmp_path):
    """Samples of 1e30 were clipped for the model, then failed the AAC encoder: "cannot write an/loud_animate.mp4"."""
    loud = write_test_audio(tmp_path / "loud.wav", codec="pcm_f32le", samples=pattern_audio(0.5, RATE) * 1e31).path
    settings = AnimateSettings(model=str(tiny), steps=2, device="cpu")
    with pytest.raises(MediaError, match=f"cannot read {loud}: its audio peaks at .600 dBFS"):
        animate(loud, tmp_path / "an" / "loud.mp4", settings)
    assert not (tmp_path / "an").exists()


def test_audio_with_more_channels_than_ffmpeg_mixes_is_refused_in_one_line(tiny, tmp_path):
    """A 255-channel WAV said "its 255-channel audio is mixed to mono", then "cannot read …: not a readable media
    file or damaged (Invalid argument)" (libswresample mixes at most 64). One line, before anything is mixed; 64
    channels still mix."""
    from cli_here import run_here

    wide = write_pcm_wav(tmp_path / "wide.wav", 255)
    done = run_here("animate", wide, "-o", tmp_path / "a.mp4", "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: cannot read {wide}: its audio has 255 channels, more "
                                                 "than the 64 FFmpeg's resampler mixes to mono\n")
    assert not (tmp_path / "a.mp4").exists()
    mixed = read_audio(write_pcm_wav(tmp_path / "64.wav", 64), RATE)
    assert mixed.shape == (1, 1600) and 0.29 < float(mixed.abs().max()) < 0.31


def test_a_stereo_sound_brought_to_a_loudness_stays_stereo_as_a_retakes_does(tiny, tmp_path):
    """`--loudness` re-encodes the input's sound with one gain, as a retake's: its channels kept (it was written
    mono), each its own, at the level the sidecar records, for as long as the input lasts (a stereo WAV read in
    its own layout came back twice as long, its second half silence: samples were counted across channels)."""
    rate = 44100
    t = np.arange(round(1.6 * rate)) / rate
    left, right = 0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 660 * t)
    sound = write_test_audio(tmp_path / "duet.wav", 1.6, rate, codec="pcm_s16le",
                             samples=np.stack([left, right]).astype(np.float32)).path
    out = tmp_path / "duet_animate.mp4"
    done = run_here("animate", sound, "-o", out, "-m", tiny, "--steps", "1", "--loudness", "-16", "--json",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    played, played_rate = decode_audio(out)
    assert played.shape[0] == 2 and played_rate == rate
    n = left.size
    assert abs(played.shape[1] - n) < 0.01 * rate, played.shape  # within one AAC frame of the input's length
    gain = float(played[0, :n] @ left / (left @ left))
    assert np.abs(played[0, :n] - gain * left).max() < 0.02 and np.abs(played[1, :n] - gain * right).max() < 0.02
    assert json.loads(done.stdout)["delivery"]["lufs_after"] == pytest.approx(-16.0, abs=0.1)


def test_a_5_1_sound_brought_to_a_loudness_keeps_its_channels_and_says_only_the_model_hears_mono(tiny, tmp_path):
    """A 5.1 WAV animated with `--loudness`: the output plays its six channels, and the note says the model hears
    them mixed to mono. It said "its 6-channel audio is mixed to mono", as if the output's sound were."""
    sound = write_test_audio(tmp_path / "surround.wav", 0.5, RATE, channels=6, codec="pcm_s16le").path
    out = tmp_path / "surround_animate.mp4"
    done = run_here("animate", sound, "-o", out, "-m", tiny, "--steps", "1", "--loudness", "-16",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"{sound}: the model hears its 6-channel audio mixed to mono\n" in done.stderr
    assert "is mixed to mono" not in done.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.layout.name == "5.1"


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_7_1_sound_brought_to_a_loudness_keeps_its_eight_channels(tiny, tmp_path, suffix):
    """A 7.1 WAV animated with `--loudness` into an mp4 (AAC) or a webm (Opus) plays all eight channels. The
    process died of a segfault, no word said: measuring the encoded sound's peak read the decoder's planar 7.1
    frames through PyAV's to_ndarray, which crashes on eight planes."""
    sound = write_test_audio(tmp_path / "surround.wav", 0.5, RATE, channels=8, codec="pcm_s16le").path
    out = tmp_path / f"surround_animate{suffix}"
    done = run_here("animate", sound, "-o", out, "-m", tiny, "--steps", "1", "--loudness", "-16",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    played, _ = decode_audio(out)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.layout.name == "7.1"
    peaks = np.abs(played).max(axis=1)
    assert peaks.shape == (8,) and np.all(np.delete(peaks, 3) > 0.01)  # AAC keeps the LFE (3) below 120 Hz


def test_a_7_1_aac_sound_re_encoded_into_a_webm_ends_with_the_picture(tiny, tmp_path):
    """A 7.1 AAC sound animated into a webm is re-encoded (Opus), cut where the picture ends. The process died of
    a segfault: cutting the decoder's last planar 7.1 frame went through PyAV's to_ndarray."""
    sound = write_test_audio(tmp_path / "surround.m4a", 1.0, RATE, channels=8).path
    out = tmp_path / "surround_animate.webm"
    done = run_here("animate", sound, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    played, rate = decode_audio(out)
    assert played.shape[1] / rate == pytest.approx(1.0, abs=0.03)


def test_a_sound_brought_to_a_loudness_is_given_one_gain_never_reshaped(tiny, tmp_path):
    """The sound is the user's own: brought to `--loudness` it is scaled, as a retake's is — a quiet tone with a
    burst near full scale, asked for −5 LUFS, keeps its shape (FFmpeg's limiter flattened the burst and lifted the
    rest), stops at −1 dBTP and says it fell short."""
    rate = 16000
    t = np.arange(round(1.6 * rate)) / rate
    tone = 0.02 * np.sin(2 * np.pi * 440 * t)
    tone[round(1.1 * rate) : round(1.12 * rate)] *= 0.95 / 0.02  # 20 ms near full scale
    sound = write_test_audio(tmp_path / "burst.wav", 1.6, rate, codec="pcm_s16le",
                             samples=tone[None].astype(np.float32)).path
    out = tmp_path / "burst_animate.mp4"
    done = run_here("animate", sound, "-o", out, "-m", tiny, "--steps", "1", "--loudness", "-5",
                    "--sample-rate", str(rate), env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "LU short of --loudness -5: it is given one gain" in done.stderr
    (played,), _ = decode_audio(out)
    played = played[: tone.size]
    gain = float(played @ tone[: played.size] / (tone[: played.size] @ tone[: played.size]))
    assert np.abs(played - gain * tone[: played.size]).max() < 0.02  # AAC's error; the limiter's was ~0.4


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_a_float_sound_re_encoded_into_a_container_that_holds_pcm_stays_float_and_keeps_its_peaks(
    tiny, tmp_path, suffix
):
    """An f32 WAV peaking at +4 dBFS, animated at `--sample-rate 48000` into an .mkv or .mov (which hold PCM, and
    keep it when the sound is copied): it was re-encoded to AAC, its peaks clipped at full scale. It stays f32 PCM,
    as a retake's does, peaks and all, and nothing is said to be clipped."""
    t = np.arange(round(0.5 * RATE)) / RATE
    hot = write_test_audio(tmp_path / "hot.wav", 0.5, RATE, codec="pcm_f32le",
                           samples=(1.6 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)).path
    out = tmp_path / f"hot{suffix}"
    done = run_here("animate", hot, "-o", out, "-m", tiny, "--steps", "1", "--sample-rate", "48000",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0 and "clipped" not in done.stderr, done.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "pcm_f32le"
    played, rate = decode_audio(out)
    assert rate == 48000 and 1.55 < np.abs(played).max() < 1.65


def test_an_upscaled_animation_counts_its_upscaling_in_its_one_eta(tmp_path, monkeypatch):
    """The upscaling after the windows (longer than their sampling on a CPU) was in no ETA: each window's steps
    counted alone, and a `windows: N/N` line said no time left, though the upscaling had all of it to go. The windows'
    steps count on into the upscaling's, one total: 2 windows of 1 step of `tiny`, then its `tiny-sr` (ddim, 2 steps)
    on each of the 2 chunks of the 20 upscaled frames: 6. Here every step line is due (no 30 s wait)."""
    from tiny_model import register_tiny_with_upsampler

    register_tiny_with_upsampler(tmp_path)
    monkeypatch.setattr("mmgen.cli.progress.PLAIN_SECONDS", 0)
    sound = write_test_wav(tmp_path / "sound.wav", seconds=2.0)
    done = run_here("animate", sound.path, "-m", "tiny", "--steps", "1", "--upscale", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    steps = [line.split(", ETA")[0].split(": step ")[1] for line in lines if ": step " in line]
    assert steps == ["1/6", "2/6", "3/6", "4/6", "5/6"], done.stderr
    assert next(line for line in lines if line.startswith("windows: 2/2")).startswith("windows: 2/2, ETA "), lines
    assert decode_frames(tmp_path / "sound_animate.mp4").shape == (20, 32, 32, 3)  # 16×16 → 32×32
