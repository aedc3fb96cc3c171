"""`mmgen retake`: a creator who likes a clip except for two seconds regenerates just those, and everything
outside them stays as it was — the sound sample for sample, the picture's packets byte for byte.

Clips of the demo model's flash-and-tone world (16×16 at 10 fps, 8 kHz, like mmgen's own outputs) and a 7 s
user clip (320×240 H.264, 44.1 kHz stereo AAC) are written with PyAV here; the retaken sound is compared with
the input decoded by PyAV, and scored against the world's flashes.
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from cli_here import run_here
from loudness_meter import ebur128
from media_factory import (
    audio_stream_seconds,
    decode_audio,
    decode_frames,
    packets,
    pattern_audio,
    write_late_streams,
    write_test_video,
    write_wide_clip,
)
from mmgen_cli import mmgen_env

from mmgen.data.synthetic import WorldConfig, read_labels, write_dataset
from mmgen.data.world_metrics import EventCounts, detect_bursts
from mmgen.errors import MediaError
from mmgen.media import probe, read_audio
from mmgen.media.loudness import integrated_loudness, true_peak
from mmgen.pipelines.retake import retake
from mmgen.pipelines.settings import RetakeSettings

RATE, FPS = 8000, 10  # the demo model's
WORLD = WorldConfig(frames=60, size=16, sample_rate=RATE, fps=FPS, min_events=6, max_events=10)  # 6 s clips
RANGE = (2.0, 4.0)
CLIPS = 3


def s16(samples: np.ndarray) -> np.ndarray:
    """Float samples as a 16-bit WAV stores them (FFmpeg: round(x · 32768), saturated)."""
    return np.clip(np.rint(samples.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)


def wav_channels(path) -> np.ndarray:
    """A 16-bit WAV's samples as (C, L) int16."""
    with av.open(str(path)) as container:
        channels = container.streams.audio[0].codec_context.channels
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).reshape(-1, channels).T


def wav_samples(path) -> np.ndarray:
    """A mono 16-bit WAV's samples (L,) int16."""
    (samples,) = wav_channels(path)
    return samples


def decoded_at(path, rate: int) -> np.ndarray:
    """The first audio stream as mmgen reads an input: mono at `rate` (the retake starts from these samples)."""
    return read_audio(path, rate)[0].numpy()


def no_click(sound: np.ndarray, seams: list[int], width: int) -> bool:
    """The largest sample-to-sample jump within `width` of each seam is within the clip's own 99th percentile."""
    jumps = np.abs(np.diff(sound.astype(np.float64)))
    ceiling = np.percentile(jumps, 99)
    return all(jumps[max(0, s - width) : s + width].max() <= ceiling for s in seams)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    write_dataset(folder / "clips", WORLD, CLIPS, 11)
    return folder, read_labels(folder / "clips")


@pytest.fixture(scope="module")
def world_retakes(world):
    """Each world clip with its sound retaken between 2 and 4 s, at the model's rate and level (`mmgen retake`, in
    this process: tests/cli_here.py)."""
    folder, labels = world
    env = mmgen_env(folder)
    results = []
    for k, label in enumerate(labels):
        source, out = folder / "clips" / label.file, folder / f"retake_{k}.mp4"
        done = run_here("retake", source, "--range", f"{RANGE[0]}:{RANGE[1]}", "--seed", str(k), "--wav",
                        "--loudness", "off", "--sample-rate", "model", "-o", out, "--json", env=env)
        assert done.returncode == 0, done.stderr
        results.append((label, source, out, json.loads(done.stdout)))
    return results


def test_outside_the_range_the_sound_is_the_inputs_and_the_picture_its_packets(world_retakes):
    a, b = (round(t * RATE) for t in RANGE)
    for _, source, out, record in world_retakes:
        assert packets(out, "video") == packets(source, "video")
        before, after = decoded_at(source, RATE), wav_samples(out.with_suffix(".wav"))
        assert len(after) == len(before)
        assert np.array_equal(after[:a], s16(before[:a])) and np.array_equal(after[b:], s16(before[b:]))
        assert np.abs(after[a:b].astype(np.int32) - s16(before[a:b])).max() > 1000  # inside: new sound
        assert record["retake"] == {"modality": "audio", "ranges": [list(RANGE)]}
        assert record["delivery"]["sample_rate"] == RATE and record["delivery"]["loudness_target"] is None
        assert record["sample_rate"] == RATE and isinstance(record["seed"], int)


def test_the_seams_do_not_click(world_retakes):
    for _, _, out, _ in world_retakes:
        sound = wav_samples(out.with_suffix(".wav")) / 32768
        assert no_click(sound, [round(t * RATE) for t in RANGE], width=round(0.03 * RATE))


def test_the_retaken_range_still_puts_a_tone_on_every_flash_there(world_retakes):
    first, last = (round(t * FPS) for t in RANGE)
    counts = EventCounts.of([], [])
    for label, _, out, _ in world_retakes:
        sound = decoded_at(out, RATE)[round(RANGE[0] * RATE) : round(RANGE[1] * RATE)]
        found = [b.frame for b in detect_bursts(torch.from_numpy(sound)[None], RATE, FPS, last - first)]
        counts = counts + EventCounts.of(found, [f - first for f in label.event_frames if first <= f < last])
    assert counts.f1 >= 0.85


@pytest.fixture(scope="module")
def user_clip(tmp_path_factory):
    """7 s of someone's phone video: 320×240 H.264 at 30 fps, stereo AAC at 44.1 kHz."""
    folder = tmp_path_factory.mktemp("user")
    return write_test_video(folder / "holiday.mp4", seconds=7.0, fps=30, size=(240, 320), channels=2,
                            sample_rate=44100).path


def test_a_user_clips_sound_retake_keeps_its_picture_and_the_rest_of_its_sound(user_clip, tmp_path):
    out = tmp_path / "mended.mp4"
    done = run_here("retake", user_clip, "--range", "1:1.5", "--range", "5:5.4", "--seed", "3", "--wav",
                     "--loudness", "off", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr

    assert packets(out, "video") == packets(user_clip, "video")
    rate = 48000
    # Stereo stays stereo, in the --wav and the mp4 (the sound was mixed to mono): each channel its own sound.
    before, after = read_audio(user_clip, rate, layout="stereo").numpy(), wav_channels(out.with_suffix(".wav"))
    assert after.shape == before.shape and before.shape[0] == 2
    edges = [0, *(round(t * rate) for t in (1, 1.5, 5, 5.4)), before.shape[1]]
    for channel in range(2):
        for k, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
            same = np.array_equal(after[channel, a:b], s16(before[channel, a:b]))
            assert same == (k % 2 == 0), f"channel {channel}, part {k}"
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.sample_rate == rate
        assert container.streams.audio[0].codec_context.channels == 2
    # The AAC track: as long as the input's sound to the sample and lined up with it (lag 0) outside the ranges,
    # but not the same samples: AAC is lossy (about 55 dB signal to noise here). A part is compared from one AAC
    # frame (1024 samples) away from a range, where the new sound's coding noise spreads, and from the sound's
    # fifth frame on (4096 samples): the encoder codes the tone's abrupt start coarsely (13 to 27 dB there). Stereo
    # is coded at 128 kb/s a channel: at 128 kb/s for both, the whole first second came back at only 30 dB.
    track = read_audio(out, rate, layout="stereo").numpy()
    assert track.shape == before.shape
    for channel in range(2):
        for a, b in zip([3072, *edges[2::2]], edges[1::2], strict=True):
            kept, heard = before[channel, a + 1024 : b - 1024], track[channel, a + 1024 : b - 1024]
            fit = [np.dot(kept[64 + lag : lag - 64 or None], heard[64:-64]) for lag in range(-64, 65)]
            snr = 10 * np.log10(np.sum(kept**2) / np.sum((heard - kept) ** 2))
            assert int(np.argmax(fit)) - 64 == 0 and snr > 40, f"channel {channel}"


def test_a_stereo_pcm_clips_sound_retake_keeps_each_channels_samples_outside_the_range(tiny, tmp_path):
    """A camera's stereo PCM clip retaken into an mkv: both channels come back, each the input's own sample for
    sample outside the range (it was one mono mix of the two); inside, the new sound is in both."""
    clip = write_test_video(tmp_path / "take.mkv", seconds=1.6, size=(16, 16), channels=2, sample_rate=16000,
                            audio_codec="pcm_s16le").path  # a 440 Hz tone on the left, 880 Hz on the right
    out = tmp_path / "mended.mkv"
    done = run_here("retake", clip, "--range", "0.5:0.9", "-m", tiny, "--steps", "1", "--seed", "2", "--wav",
                    "--loudness", "off", "--sample-rate", "model", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr

    (before, _), (after, rate) = decode_audio(clip), decode_audio(out)
    assert rate == 16000 and after.shape == before.shape == (2, 25600)
    assert np.array_equal(wav_channels(out.with_suffix(".wav")), s16(after))
    a, b = round(0.5 * rate), round(0.9 * rate)
    for channel in range(2):
        assert np.array_equal(after[channel, :a], before[channel, :a])
        assert np.array_equal(after[channel, b:], before[channel, b:])
    inside = after[:, a + 320 : b - 320]  # past the 20 ms seams: the one remade sound, in both channels
    assert np.abs(inside - before[:, a + 320 : b - 320]).max() > 0.1
    assert np.abs(inside[0] - inside[1]).max() <= 2 / 32768


@pytest.mark.parametrize("codec, layout", [("flac", "7.1"), ("pcm_s16le", "8 channels")])
def test_a_7_1_clips_sound_retake_keeps_all_eight_channels_outside_the_range(tiny, tmp_path, codec, layout):
    """A 7.1 clip (a tone of its own in each channel) retaken into an mkv: all eight channels come back, each the
    input's own sample for sample outside the range, the one new sound in each inside it. FLAC keeps its 7.1 layout;
    Matroska stores none for PCM ("8 channels", as mmgen's own 7.1 PCM retake reads back), and channels with no
    layout are taken in FFmpeg's default one for their count, not mixed to mono. (Reading them back with PyAV's
    planar floats crashed: media_factory.decode_audio reads packed ones.) The model hears them mixed to mono, and
    says so, as animate does (a kept layout said nothing; 16 channels, mixed for the output too, did)."""
    clip = write_test_video(tmp_path / "surround.mkv", seconds=1.6, size=(16, 16), channels=8, sample_rate=16000,
                            audio_codec=codec).path
    out = tmp_path / "mended.mkv"
    done = run_here("retake", clip, "--range", "0.5:0.9", "-m", tiny, "--steps", "1", "--seed", "2",
                    "--loudness", "off", "--sample-rate", "model", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"{clip}: the model hears its 8-channel audio mixed to mono\n" in done.stderr

    (before, _), (after, rate) = decode_audio(clip), decode_audio(out)
    assert rate == 16000 and after.shape == before.shape == (8, 25600)
    for made in (clip, out):
        with av.open(str(made)) as container:
            assert container.streams.audio[0].codec_context.layout.name == layout
    a, b = round(0.5 * rate), round(0.9 * rate)
    assert np.array_equal(after[:, :a], before[:, :a]) and np.array_equal(after[:, b:], before[:, b:])
    inside = after[:, a + 320 : b - 320]  # past the 20 ms seams
    assert np.abs(inside - before[:, a + 320 : b - 320]).max() > 0.1
    assert np.abs(inside - inside[0]).max() <= 2 / 32768


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_7_1_clip_retaken_into_a_lossy_container_keeps_all_eight_channels(tiny, tmp_path, suffix):
    """A 7.1 clip (PCM in Matroska) retaken into an mp4 (AAC) or a webm (Opus), its sound brought to the default
    loudness: all eight channels come back. The process died of a segfault, no word said: measuring the encoded
    sound's peak read the decoder's planar 7.1 frames through PyAV's to_ndarray, which crashes on eight planes."""
    clip = write_test_video(tmp_path / "surround.mkv", seconds=1.0, size=(16, 16), channels=8, sample_rate=16000,
                            audio_codec="pcm_s16le").path
    out = tmp_path / f"mended{suffix}"
    done = run_here("retake", clip, "--range", "0.5:0.9", "-m", tiny, "--steps", "1", "-o", out,
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.layout.name == "7.1"
    played, _ = decode_audio(out)
    peaks = np.abs(played).max(axis=1)
    assert peaks.shape == (8,) and np.all(np.delete(peaks, 3) > 0.01)  # AAC keeps the LFE (3) below 120 Hz


def test_a_24_bit_flac_sound_retake_keeps_its_24_bits_outside_the_range(tiny, tmp_path):
    """A 24-bit FLAC sound retaken into an mkv stays FLAC of 24 bits, the input's own sample for sample outside the
    range: it came out 16-bit (FLAC's encoder took its first sample format, s16), every kept sample rounded. So
    does its --wav, 24-bit PCM (it was 16-bit whatever the source)."""
    clip = write_test_video(tmp_path / "take.mkv", seconds=1.6, size=(16, 16), sample_rate=16000,
                            audio_codec="flac", sample_format="s32").path  # FFmpeg's flac: s32 is 24 bits
    out = tmp_path / "mended.mkv"
    done = run_here("retake", clip, "--range", "0.5:0.9", "-m", tiny, "--steps", "1", "--seed", "2",
                    "--loudness", "off", "--sample-rate", "model", "--wav", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    wav = out.with_suffix(".wav")

    (before, _), (after, rate), (alone, _) = decode_audio(clip), decode_audio(out), decode_audio(wav)
    assert np.any(before * 32768 != np.rint(before * 32768))  # the input has more than 16 bits to keep
    for made, codec in ((clip, "flac"), (out, "flac"), (wav, "pcm_s24le")):
        with av.open(str(made)) as container:
            context = container.streams.audio[0].codec_context
            assert (context.name, context.format.name) == (codec, "s32")
    a, b = round(0.5 * rate), round(0.9 * rate)
    for sound in (after, alone):
        assert np.array_equal(sound[:, :a], before[:, :a]) and np.array_equal(sound[:, b:], before[:, b:])
    assert np.abs(after[:, a + 320 : b - 320] - before[:, a + 320 : b - 320]).max() > 0.1  # past the seams: new


def test_a_float_sound_retake_s_wav_is_float_too_and_keeps_its_peaks(tiny, tmp_path):
    """An f32 sound past full scale (+4 dBFS), retaken into an mkv, keeps its f32 track and its peaks there; its --wav
    was 32-bit integer PCM, which clipped them (and said so). It is f32 as the input is: both are the input's own
    sound, sample for sample, outside the range, and nothing is said to be clipped."""
    rate = 16000
    loud = 1.6 * np.sin(2 * np.pi * 440 * np.arange(round(0.8 * rate)) / rate)
    clip = write_test_video(tmp_path / "take.mkv", seconds=0.8, size=(16, 16), sample_rate=rate,
                            audio_codec="pcm_f32le", samples=loud[None].astype(np.float32)).path
    out = tmp_path / "mended.mkv"
    done = run_here("retake", clip, "--range", "0.3:0.5", "-m", tiny, "--steps", "1", "--seed", "2",
                    "--loudness", "off", "--sample-rate", "model", "--wav", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0 and "clipped" not in done.stderr, done.stderr
    wav = out.with_suffix(".wav")
    for made in (out, wav):
        with av.open(str(made)) as container:
            assert container.streams.audio[0].codec_context.name == "pcm_f32le", made
    (before, _), (after, _), (alone, _) = decode_audio(clip), decode_audio(out), decode_audio(wav)
    assert before.max() > 1.5
    a, b = round(0.3 * rate), round(0.5 * rate)
    for sound in (after, alone):
        assert np.array_equal(sound[:, :a], before[:, :a]) and np.array_equal(sound[:, b:], before[:, b:])


@pytest.mark.parametrize("burst, target", [(0.0, -20), (0.95, -5)])
def test_a_sound_retake_gives_the_input_one_gain_outside_the_ranges(tiny, tmp_path, burst, target):
    """A sound retake brought to a loudness: outside the ranges the sound is the input's times one gain (to 1 LSB),
    the sidecar's LUFS before and after differ by that gain and are the output's. A quiet tone reaches −20 (the tiny
    model's new sound, near full scale, peaks high between its samples: −16 would pass −1 dBTP); one with a burst
    near full scale outside the ranges, to −5, keeps its shape — FFmpeg's limiter flattened the burst, and gained the rest up more than the sidecar said
    (+13 dB for +4.9) — stays under −1 dBTP, and falls short of −5, said once."""
    rate = 16000
    t = np.arange(round(1.6 * rate)) / rate
    tone = 0.02 * np.sin(2 * np.pi * 440 * t)
    tone[round(1.1 * rate) : round(1.12 * rate)] *= burst / 0.02 if burst else 1  # 20 ms, outside both ranges
    clip = write_test_video(tmp_path / "take.mkv", seconds=1.6, size=(16, 16), audio_codec="pcm_s16le",
                            samples=tone[None].astype(np.float32)).path
    out = tmp_path / "mended.mkv"
    done = run_here("retake", clip, "--range", "0.3:0.35", "--range", "0.7:0.75", "-m", tiny, "--steps", "1",
                    "--seed", "2", "--sample-rate", "model", "--loudness", str(target), "--wav", "-o", out, "--json",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    delivery = json.loads(done.stdout)["delivery"]

    (before,), after = decode_audio(clip)[0], wav_samples(out.with_suffix(".wav")) / 32768
    assert np.array_equal(s16(decode_audio(out)[0][0]), s16(after))
    outside = np.ones(len(before), dtype=bool)
    outside[round(0.3 * rate) : round(0.35 * rate)] = outside[round(0.7 * rate) : round(0.75 * rate)] = False
    gain = np.dot(after[outside], before[outside]) / np.dot(before[outside], before[outside])
    assert np.abs(after[outside] - gain * before[outside]).max() <= 1.01 / 32768  # one gain, to 1 LSB
    lufs, peak = integrated_loudness(after, rate), true_peak(after)
    assert delivery["lufs_after"] == pytest.approx(lufs, abs=0.01)
    assert delivery["true_peak_dbtp"] == pytest.approx(peak, abs=0.01) and peak <= -1.0 + 1e-3  # 16-bit rounding
    assert delivery["lufs_after"] - delivery["lufs_before"] == pytest.approx(20 * np.log10(gain), abs=0.02)
    assert ebur128(after, rate)[0] == pytest.approx(lufs, abs=0.2)  # FFmpeg's meter too
    if burst:
        assert peak == pytest.approx(-1.0, abs=0.01) and lufs < target - 0.5
        assert done.stderr.count(f"LUFS, {target - lufs:.1f} LU short of --loudness {target}: it is given one gain") == 1
    else:
        assert lufs == pytest.approx(target, abs=0.01) and "short of" not in done.stderr


def test_a_picture_retake_needs_a_clip_at_the_models_frame_size(user_clip, tmp_path):
    out = tmp_path / "mended.mp4"
    done = run_here("retake", user_clip, "--range", "1:2", "--video", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert "--video: a picture retake needs a clip at the model's frame size 16x16" in done.stderr
    assert "holiday.mp4 is 320x240" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_a_picture_retake_needs_a_clip_at_the_models_frame_rate(tmp_path):
    """Outside the ranges the picture is the input's own frames: a 25 fps clip (or a variable-rate one) would
    come out resampled to the demo's 10 fps."""
    clip = write_test_video(tmp_path / "fast.mp4", seconds=1.2, fps=25, size=(16, 16)).path
    done = run_here("retake", clip, "--range", "0.2:0.6", "--video", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--video: a picture retake needs a clip at the model's frame rate 10 fps" in done.stderr
    assert "fast.mp4 runs at 25 fps" in done.stderr
    assert not (tmp_path / "fast_retake.mp4").exists()


@pytest.mark.parametrize("fps, shown", [(30000 / 1001, "29.97"), (24000 / 1001, "23.976")])
def test_a_picture_retake_refusal_names_an_ntsc_rate_as_it_is(tmp_path, fps, shown):
    """A 30000/1001 clip was refused as "runs at 30 fps" and a 24000/1001 one as "24 fps": rounded to rates they do
    not run at, next to the model's 10 fps, as if that were the trouble. They are named 29.97 and 23.976."""
    clip = write_test_video(tmp_path / "ntsc.mp4", seconds=1.2, fps=fps, size=(16, 16)).path
    done = run_here("retake", clip, "--range", "0.2:0.6", "--video", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"ntsc.mp4 runs at {shown} fps (retake its sound instead)" in done.stderr, done.stderr


def test_a_picture_retake_of_a_variable_frame_rate_clip_says_the_rate_varies(tmp_path):
    """A clip whose frames come 50 and 150 ms apart by turns has no frame rate to name: the average FFmpeg reads
    (11 fps here) is not a rate it runs at, and at any average its frames would come out resampled."""
    times = [sum(0.05 if k % 2 == 0 else 0.15 for k in range(n)) for n in range(16)]
    clip = write_test_video(tmp_path / "phone.mp4", size=(16, 16), frame_times=times).path
    done = run_here("retake", clip, "--range", "0.2:0.6", "--video", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("phone.mp4's frame rate varies (frames 50 to 150 ms apart) (retake its "
                                        "sound instead)"), done.stderr
    assert not (tmp_path / "phone_retake.mp4").exists()


def test_a_steady_clip_with_a_dropped_frame_is_retaken_with_the_frame_before_held_in_its_place(tmp_path):
    """A phone's 10 fps clip on a 1 ms clock with the frame at 0.3 s dropped (gaps of 100 ms, one of 200) was refused
    as "frame rate varies (frames 100 to 200 ms apart)". It is steady: the retake goes ahead, says where the frame is
    missing, and the output is steady, the frame before held in its place as a player shows it."""
    clip = write_test_video(tmp_path / "phone.mp4", size=(16, 16), frame_times=[k / 10 for k in range(16) if k != 3]).path
    out = tmp_path / "mended.mp4"
    done = run_here("retake", clip, "--range", "1:1.2", "--video", "--steps", "1", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"{clip}: a frame is missing at 0.300 s (a steady 10 fps otherwise)" in done.stderr
    before, after = (frames.astype(int).mean(axis=(1, 2, 3)) for frames in (decode_frames(clip), decode_frames(out)))
    assert len(after) == 16 and len(before) == 15
    held = np.insert(before, 3, before[2])  # as a player shows the input: frame 2 on screen until 0.4 s
    assert np.abs(after[:10] - held[:10]).max() < 2 and np.abs(after[12:] - held[12:]).max() < 2


def test_a_steady_clip_whose_last_frame_is_written_short_is_at_its_frames_rate(tmp_path):
    """Frames exactly 100 ms apart, as the demo model makes them, but the muxer wrote the last one's duration
    short: FFmpeg's average says 10.7 fps, and the clip was refused as "runs at 10.7 fps". Its frames' own gaps
    say 10 fps, which is the model's: the retake goes ahead."""
    clip = write_test_video(tmp_path / "steady.mp4", size=(16, 16), frame_times=[k / 10 for k in range(16)]).path
    done = run_here("retake", clip, "--range", "0.2:0.6", "--video", "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "steady_retake.mp4").exists()


def test_a_picture_retake_remakes_frames_only_in_the_range_and_copies_the_sound(world, tmp_path):
    folder, labels = world
    source, out = folder / "clips" / labels[0].file, tmp_path / "mended.mp4"
    done = run_here("retake", source, "--range", "1:1.5", "--video", "--seed", "2", "-o", out,
                     env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr

    assert packets(out, "audio") == packets(source, "audio")
    before, after = decode_frames(source).astype(int), decode_frames(out).astype(int)
    assert before.shape == after.shape
    change = np.abs(after - before).mean(axis=(1, 2, 3))  # per frame, 0..255
    assert change[:10].max() < 5 and change[15:].max() < 5  # re-encoded, otherwise the same
    assert change[10:15].max() > 10


def test_a_retake_is_delivered_at_minus_16_lufs_and_48k_by_default(world, tmp_path):
    folder, labels = world
    out = tmp_path / "loud.mp4"
    done = run_here("retake", folder / "clips" / labels[1].file, "--range", "3:3.5", "--wav", "-o", out,
                     "--json", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    delivery = record["delivery"]
    assert record["sample_rate"] == 48000 and delivery["loudness_target"] == -16.0
    # One gain (the input's sound kept outside the range): −16, or as near as the true peak's −1 dBTP lets it, said.
    reached = delivery["lufs_after"]
    # the true peak is the delivered file's (its decoded AAC), the gain lowered past the ceiling by a margin
    short = -1.2 <= delivery["true_peak_dbtp"] <= -1.0 and "short of --loudness -16" in done.stderr
    assert reached == -16.0 or short, (delivery, done.stderr)
    wav = wav_samples(out.with_suffix(".wav")) / 32768
    lufs, peak = ebur128(wav, 48000)
    assert lufs == pytest.approx(reached, abs=0.5) and peak <= -1.0
    sound, rate = decode_audio(out)
    assert rate == 48000 and ebur128(sound[0], 48000)[0] == pytest.approx(reached, abs=0.5)


def test_a_batch_file_retakes_clips_as_a_job_kind(tiny, tmp_path):
    clip = write_test_video(tmp_path / "take.mp4", seconds=2.0, fps=10, size=(16, 16)).path  # the tiny model's size
    (tmp_path / "jobs.yaml").write_text(
        f"defaults: {{model: {tiny}, steps: 2, device: cpu}}\n"
        "jobs:\n"
        "  - kind: retake\n"
        "    input: take.mp4\n"
        "    ranges: ['0.5:1.2']\n"
        "    loudness: off\n"
        "    sample_rate: model\n"
        "    seed: 5\n"
    )
    done = run_here("batch", tmp_path / "jobs.yaml", "-o", tmp_path / "out", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    (out,) = (tmp_path / "out").glob("*.mp4")
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["retake"] == {"modality": "audio", "ranges": [[0.5, 1.2]]} and record["seed"] == 5
    assert packets(out, "video") == packets(clip, "video")
    before, after = decoded_at(clip, 16000), decoded_at(out, 16000)
    assert np.abs(after[:7000] - before[:7000]).max() < 0.05  # outside the range: the input (through AAC)
    assert np.abs(after[8000:19000] - before[8000:19000]).max() > 0.1  # inside: new sound


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_a_clip_whose_sound_outlasts_its_picture_keeps_all_of_its_sound(tiny, tmp_path, modality):
    """3 s of sound under 2 s of picture: the retake's output has both as they were (the sound was cut at the
    picture's end, and the report said 2.00 s while the --wav beside it lasted 3 s)."""
    clip = write_test_video(tmp_path / "take.mp4", seconds=2.0, fps=10, size=(16, 16), audio_seconds=3.0).path
    sound = {"wav": True, "loudness": "off", "sample_rate": "model"} if modality == "audio" else {}  # a picture
    settings = RetakeSettings(model=str(tiny), steps=2, device="cpu", seed=4, ranges=("0.5:1",),  # retake: refused
                              video=modality == "video", **sound)
    result = retake(clip, tmp_path / "mended.mp4", settings)

    out = result.files["mp4"]
    kept = "video" if modality == "audio" else "audio"
    assert packets(out, kept) == packets(clip, kept)
    assert result.media["duration_s"] == pytest.approx(3.0, abs=0.01)  # what the report says
    assert audio_stream_seconds(out) == pytest.approx(3.0, abs=0.01) and probe(out).video_duration == 2.0
    if modality == "audio":
        assert len(wav_samples(out.with_suffix(".wav"))) == 3 * 16000  # the tiny model's rate
        before, after = decoded_at(clip, 16000), decoded_at(out, 16000)
        assert np.abs(after[36000:46000] - before[36000:46000]).max() < 0.05  # past the picture: the input's



def test_a_picture_retake_into_webm_re_encodes_the_sound_to_its_own_end_not_the_aac_padding(tiny, tmp_path):
    """A 2.0 s AAC sound can go into a WebM only re-encoded (to Opus): the AAC decoder's end padding (the last
    frame's, to 1024 samples) passed through, and the sound came out 2.056 s. It is cut at the stream's declared
    end: the output's sound lasts the input's, to one Opus frame (20 ms)."""
    clip = write_test_video(tmp_path / "take.mp4", seconds=2.0, fps=10, size=(16, 16), sample_rate=16000,
                            audio_codec="aac").path
    out = tmp_path / "mended.webm"
    done = run_here("retake", clip, "--range", "0.5:1", "--video", "-m", tiny, "--steps", "1", "-o", out,
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert audio_stream_seconds(clip) == 2.0
    sound, rate = decode_audio(out)
    assert sound.shape[1] / rate == pytest.approx(2.0, abs=0.02)
    assert probe(out).audio_duration == pytest.approx(2.0, abs=0.02)  # its DURATION tag, less Opus's pre-skip

@pytest.mark.parametrize("modality", [[], ["--video"]])
def test_a_clip_whose_sound_has_more_channels_than_ffmpeg_mixes_is_refused_before_anything_is_written(
    tiny, tmp_path, modality
):
    """A retake keeps the input's sound (--video), or its sound outside the ranges: 65 channels, which no remux
    could mix for an mp4, are refused as the sound is read, in one line, before the remux is reached."""
    wide = write_wide_clip(tmp_path / "wide.mkv", 65)
    out = tmp_path / "rt" / "mended.mp4"
    done = run_here("retake", wide, "--range", "0.2:0.6", *modality, "-m", tiny, "--steps", "1", "-o", out,
                    env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: cannot read {wide}: its audio has 65 channels, "
                                                 "more than the 64 FFmpeg's resampler mixes to mono\n")
    assert not (tmp_path / "rt").exists()


def test_a_clip_whose_sound_holds_nan_is_refused_naming_it(tiny, tmp_path):
    """It was blamed on the model: "sampling gave NaN or Inf values ... (try --precision fp32)"."""
    sound = pattern_audio(0.5, 16000)
    sound[:, 3000:3100] = np.nan
    clip = write_test_video(tmp_path / "nanaudio.mkv", seconds=0.5, size=(16, 16), audio_codec="pcm_f32le",
                            samples=sound).path
    settings = RetakeSettings(model=str(tiny), steps=2, device="cpu", ranges=("0.2:0.4",))
    with pytest.raises(MediaError, match=f"cannot read {clip}: its audio holds NaN or Inf samples"):
        retake(clip, tmp_path / "rt" / "mended.mkv", settings)
    assert not (tmp_path / "rt").exists()


def frame_times(path) -> np.ndarray:
    """Seconds each frame is shown at, on the file's timeline as players count it (from its earliest stream)."""
    with av.open(str(path)) as container:
        origin = container.start_time / av.time_base
        return np.array([float(frame.pts * frame.time_base) - origin for frame in container.decode(video=0)])


@pytest.mark.parametrize(("name", "video_start", "audio_start", "codec"),
                         [("late.mov", 0.3, 0.0, "pcm_s16le"), ("cut.mp4", 3.5, 3.5, "aac")])
def test_a_picture_retake_keeps_the_pictures_own_start_beside_its_sound(tmp_path, name, video_start, audio_start,
                                                                         codec):
    """A picture starting 0.3 s after its sound (a camera's), or 22 ms after it (a clip cut at 3.5 s: the AAC
    sound's priming starts first): the picture was read from the sound's start, its first frame repeated over the
    time it did not show (23 frames for 20) and every frame after put up to a frame late against the copied sound.
    Outside the range the frames are the input's own: as many, at the same times beside the sound."""
    clip = write_late_streams(tmp_path / name, video_start, audio_start, frames=20, audio_seconds=2.3,
                              audio_codec=codec).path
    out = tmp_path / f"mended{clip.suffix}"
    done = run_here("retake", clip, "--video", "--range", "0.5:1.0", "--steps", "1", "--seed", "1", "-o", out,
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert [data for _, data in packets(out, "audio")] == [data for _, data in packets(clip, "audio")]
    assert frame_times(clip)[0] > 0.02  # the sound comes first
    assert len(frame_times(out)) == 20
    assert np.abs(frame_times(out) - frame_times(clip)).max() < 0.0015
    before, after = decode_frames(clip).astype(int), decode_frames(out).astype(int)
    change = np.abs(after - before).mean(axis=(1, 2, 3))
    assert change[:2].max() < 5 and change[-5:].max() < 5  # the input's frames, re-encoded


def test_a_sound_retake_keeps_a_delayed_sound_where_it_starts(tmp_path):
    """A sound starting 0.5 s into the picture came back from 0, 0.5 s of digital silence in front of it: it
    starts where it did (to the AAC encoder's priming, which comes before it) and lasts as long as it did."""
    clip = write_late_streams(tmp_path / "delayed.mp4", 0.0, 0.5, frames=20, audio_seconds=1.5).path
    out = tmp_path / "mended.mp4"
    done = run_here("retake", clip, "--range", "1:1.3", "--steps", "1", "--seed", "1", "-o", out,
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert packets(out, "video") == packets(clip, "video")
    before, after = probe(clip), probe(out)
    assert before.audio_start == pytest.approx(0.5 - 1056 / 48000, abs=0.001)
    assert after.audio_start == pytest.approx(before.audio_start - 1024 / 48000, abs=0.001)
    assert after.audio_start + after.audio_duration == pytest.approx(before.audio_start + before.audio_duration,
                                                                     abs=0.002)


def test_a_range_past_the_end_of_the_shorter_stream_names_it_and_the_flag_as_typed(tmp_path):
    """2 s of picture over 0.5 s of sound: the error said `--ranges 1:1.3: CLIP lasts only 0.500 s` (no such flag,
    and the clip lasts 2 s). The range is named as typed: `0:99999999999999999999999999` was `0:1e+26`."""
    clip = write_test_video(tmp_path / "short_sound.mp4", seconds=2.0, size=(16, 16), audio_seconds=0.5).path
    done = run_here("retake", clip, "--range", "1.0:1.3", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: --range 1.0:1.3: {clip}'s sound lasts only 0.500 s\n")
    done = run_here("retake", clip, "--video", "--range", "1.0:1.3", env=mmgen_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.endswith(f"--range 1.0:1.3: {clip}'s sound lasts only 0.500 s, and the picture is remade to "
                                "match it\n"), done.stderr
    far = "0:" + "9" * 26
    done = run_here("retake", clip, "--range", far, env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: --range {far}: {clip}'s sound lasts only 0.500 s\n")


@pytest.mark.parametrize(("picture", "sound", "which"), [(2.0, 1.0, "sound lasts only 1.0"),
                                                          (1.0, 2.0, "picture lasts only 1.000 s, and the sound")])
def test_a_range_past_the_end_of_a_matroska_track_without_its_duration_tag_is_refused(tmp_path, picture, sound,
                                                                                       which):
    """A Matroska whose tracks carry no DURATION tag (its writer names none): each track was taken to last the whole
    file, the longest's. A range in the longer one alone was remade as `"windows": 0` (a shorter sound), or failed
    after the model loaded, `cannot pad a window that starts past the end of the signal` (a shorter picture). Each
    track lasts as long as its packets say."""
    clip = write_test_video(tmp_path / "untagged.mkv", seconds=picture, size=(16, 16), audio_seconds=sound).path
    clip.write_bytes(clip.read_bytes().replace(b"DURATION", b"DURATIOX"))  # the tags' name, not their size
    done = run_here("retake", clip, "--range", "1.2:1.8", env=mmgen_env(tmp_path))
    assert done.returncode == 2 and done.stderr.startswith(f"mmgen: error: --range 1.2:1.8: {clip}'s {which}")
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_retake_records_the_overlap_of_its_windows_as_soundtrack_does(tiny, tmp_path):
    """`--overlap` changes a retake's windows and bytes, but its sidecar and `--json` left it out."""
    clip = write_test_video(tmp_path / "take.mp4", seconds=2.0, fps=10, size=(16, 16)).path
    done = run_here("retake", clip, "-m", tiny, "--range", "0.2:1.8", "--overlap", "0.5", "--steps", "1",
                    "-o", tmp_path / "r.mp4", "--json", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overlap"] == json.loads((tmp_path / "r.json").read_text())["overlap"] == 0.5


def test_a_batch_job_s_loudness_note_comes_with_the_job_and_names_it(tiny, tmp_path):
    """In a batch, a retake brought short of its loudness (its one gain stopped by the true peak) said so after the
    batch's summary, naming no job: the note comes as the job ends, with the batch file's line and the job's output,
    and names the target as the file sets it (`loudness: -5`), not as a flag the batch command does not take."""
    rate = 16000
    tone = 0.02 * np.sin(2 * np.pi * 440 * np.arange(round(1.6 * rate)) / rate)
    tone[round(1.1 * rate) : round(1.12 * rate)] *= 0.95 / 0.02  # a burst near full scale: -5 LUFS is out of reach
    write_test_video(tmp_path / "take.mkv", seconds=1.6, size=(16, 16), audio_codec="pcm_s16le",
                     samples=tone[None].astype(np.float32))
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"defaults: {{model: {tiny}, steps: 1, device: cpu, sample_rate: model}}\n"
                    "jobs:\n"
                    "  - {kind: retake, input: take.mkv, ranges: ['0.3:0.35'], loudness: -5, name: mended, seed: 2}\n")
    done = run_here("batch", jobs, "-o", tmp_path / "out", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "LU short of" in line]
    assert lines[at].startswith(f"{jobs}:3: note: job 1 (retake): mended.mp4: the sound is brought to ")
    assert " LU short of `loudness: -5`: it is given one gain" in lines[at], lines[at]
    assert at < next(i for i, line in enumerate(lines) if line.startswith("done job 1/1 (retake) mended.mp4"))


def test_a_short_clip_moved_over_the_input_after_the_command_checked_it_is_checked_again(tiny, tmp_path):
    """`retake in.mp4 --range 4:5`, a 1 s clip moved over in.mp4 while torch loaded: the pipeline found the command's
    check kept (checked_once) and retook nothing of the 1 s clip, exit 0, its sidecar claiming the range 4:5. A kept
    check holds only while the files it read are the same files."""
    from mmgen.errors import UsageError
    from mmgen.pipelines.checked_once import checks_kept
    from mmgen.pipelines.preflight import check_retake

    clip = write_test_video(tmp_path / "in.mp4", seconds=6.0, size=(16, 16)).path
    short = write_test_video(tmp_path / "short.mp4", seconds=1.0, size=(16, 16)).path
    settings = RetakeSettings(model=str(tiny), ranges=("4:5",))
    with checks_kept():
        check_retake(clip, None, settings)
        short.replace(clip)
        with pytest.raises(UsageError, match="lasts only 1.000 s"):
            check_retake(clip, None, settings)
