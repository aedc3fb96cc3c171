"""`mmgen soundtrack my_clip.mp4`: a phone-sized clip of any length gets new sound under its untouched picture.

The real `mmgen` command runs in a subprocess on a tiny random model (2 steps), and in the test's process
(tests/cli_here.py) where its output alone is the point: what is checked is the plumbing
— windows, lengths, copied packets, mixing, timing — not how good the sound is.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cli_here import run_here
from media_factory import (
    audio_stream_seconds,
    decode_audio,
    packets,
    pattern_audio,
    stream_kinds,
    write_late_streams,
    write_test_video,
)
from mmgen_cli import mmgen_env, run_mmgen

from mmgen.errors import MediaError
from mmgen.media import probe
from mmgen.pipelines import soundtrack
from mmgen.pipelines.settings import SoundtrackSettings

RATE = 16000
AAC_FRAME = 1024 / RATE
CLICK_AT = 5.55  # seconds: in the fifth of the six windows


def amplitude_at(audio: np.ndarray, hz: int) -> float:
    """Amplitude of the `hz` component of mono audio (L,) lasting a whole number of seconds."""
    return float(np.abs(np.fft.rfft(audio))[hz * len(audio) // RATE] / (len(audio) / 2))


@pytest.fixture(scope="module")
def scored(tiny, tmp_path_factory):
    """A 7.3 s 30 fps 320×240 clip with a quiet 440 Hz tone and a click, scored with `--mix 0.5 --wav --json`,
    the sound as the model made it (`--sample-rate model --loudness off`, so --mix blends raw levels). Returns (the input clip, the finished process)."""
    root = tmp_path_factory.mktemp("soundtrack")
    clip = write_test_video(root / "my_clip.mp4", seconds=7.3, fps=30, size=(240, 320), click_at=CLICK_AT)
    done = run_mmgen(
        "soundtrack", clip.path, "-m", tiny, "--steps", "2", "--seed", "3", "--mix", "0.5", "--wav", "--json",
        "--sample-rate", "model", "--loudness", "off", env=mmgen_env(tmp_path_factory.mktemp("home")),
    )
    assert done.returncode == 0, done.stderr
    return clip, done


def test_the_output_keeps_the_video_packets_byte_for_byte(scored):
    clip, _ = scored
    out = clip.path.with_name("my_clip_soundtrack.mp4")
    assert sorted(p.name for p in clip.path.parent.iterdir()) == sorted(
        ["my_clip.mp4", "my_clip_soundtrack.mp4", "my_clip_soundtrack.json", "my_clip_soundtrack.wav"]
    )
    assert stream_kinds(out) == ["video", "audio"]
    assert packets(out, "video") == packets(clip.path, "video")


def test_the_new_sound_lasts_exactly_as_long_as_the_clip(scored):
    clip, _ = scored
    out = clip.path.with_name("my_clip_soundtrack.mp4")
    assert audio_stream_seconds(out) == pytest.approx(7.3, abs=0.05)
    sound, rate = decode_audio(out)
    assert rate == RATE
    assert 7.3 * RATE <= sound.shape[1] <= 7.3 * RATE + 1024  # the decoder also returns the last frame's padding
    assert np.abs(sound[0, round(7.3 * RATE) :]).max() < 0.05  # ...which is silence
    wav, wav_rate = decode_audio(clip.path.with_name("my_clip_soundtrack.wav"))
    assert (wav.shape, wav_rate) == ((1, round(7.3 * RATE)), RATE)  # --wav: the new audio alone, to the sample


def test_mix_blends_in_the_clips_own_sound_in_time(scored):
    """--mix 0.5: output = ½·new + ½·own. Taking away ½ of the --wav file leaves the clip's own tone at half its
    level (0.1 → 0.05) and its click where it was."""
    clip, _ = scored
    out, _ = decode_audio(clip.path.with_name("my_clip_soundtrack.mp4"))
    new, _ = decode_audio(clip.path.with_name("my_clip_soundtrack.wav"))
    seconds = 7 * RATE
    own = out[0, :seconds] - 0.5 * new[0, :seconds]
    assert amplitude_at(own, 440) == pytest.approx(0.05, abs=0.01)
    near_click = own[5 * RATE : 6 * RATE]
    assert 5 + np.abs(near_click).argmax() / RATE == pytest.approx(CLICK_AT, abs=0.002)


def test_sidecar_and_json_say_how_the_soundtrack_was_made(scored):
    clip, done = scored
    sidecar = json.loads(clip.path.with_name("my_clip_soundtrack.json").read_text())
    assert [json.loads(line) for line in done.stdout.splitlines()] == [sidecar]
    assert sidecar["windows"] == 6  # 73 frames at 10 fps in windows of 16 sharing 4: 16 + 5·12 ≥ 73
    assert (sidecar["overlap"], sidecar["guidance"], sidecar["mix"]) == (0.25, "replacement", 0.5)
    assert (sidecar["seed"], sidecar["steps"], sidecar["input"]) == (3, 2, str(clip.path))
    assert (sidecar["width"], sidecar["height"], sidecar["fps"]) == (320, 240, 30.0)
    assert sidecar["wav"] == str(clip.path.with_name("my_clip_soundtrack.wav"))
    # plain progress lines when stderr is not a terminal: the first window, each quarter and the last (of 6: 1, 2, 3, 5, 6)
    assert done.stderr.count("windows: ") == 5


def test_a_clip_shorter_than_one_window_is_padded_and_trimmed_back(tiny, tmp_path):
    clip = write_test_video(tmp_path / "blink.mp4", seconds=0.7, fps=30)
    out = tmp_path / "scored" / "blink.mp4"
    out.parent.mkdir()
    done = run_here("soundtrack", clip.path, "-o", out, "-m", tiny, "--steps", "2", "--wav",
                    "--sample-rate", "model", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert packets(out, "video") == packets(clip.path, "video")
    assert audio_stream_seconds(out) == pytest.approx(0.7, abs=0.05)
    wav, _ = decode_audio(out.with_suffix(".wav"))
    assert wav.shape == (1, round(0.7 * RATE))
    assert json.loads(out.with_suffix(".json").read_text())["windows"] == 1
    assert f"wrote {out}" in done.stderr and "0.70 s" in done.stderr


def test_a_folder_as_output_gets_the_default_name_inside_it(tiny, tmp_path):
    """`-o scored/` (an existing folder, or a new one spelled with a trailing slash): INPUT_soundtrack.mp4 in it.
    In this process (tests/cli_here.py): the name is the point, not the process."""
    clip = write_test_video(tmp_path / "blink.mp4", seconds=0.7, fps=30)
    (tmp_path / "scored").mkdir()
    for folder in (tmp_path / "scored", f"{tmp_path / 'new'}/"):
        done = run_here("soundtrack", clip.path, "-o", folder, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
        assert done.returncode == 0, done.stderr
        out = Path(folder) / "blink_soundtrack.mp4"
        assert packets(out, "video") == packets(clip.path, "video") and out.with_suffix(".json").is_file()


def test_a_variable_frame_rate_clip_gets_a_soundtrack_as_long_as_its_picture(tiny, tmp_path):
    """Frames at 0, 1, 2, 10, 11, 40, 41, 42 thirtieths of a second and 1.5 s of sound; one packet claims 0.97 s
    (libx264's decode-order gaps), which made a 2.33 s soundtrack for a 1.43 s picture."""
    clip = write_test_video(tmp_path / "vfr.mp4", size=(16, 16), frame_times=[t / 30 for t in (0, 1, 2, 10, 11, 40, 41, 42)],
                            time_base=Fraction(1, 30), audio_seconds=1.5)
    settings = SoundtrackSettings(model=str(tiny), steps=2, device="cpu", sample_rate="model", wav=True)
    result = soundtrack(clip.path, tmp_path / "so" / "vfr.mp4", settings)
    assert result.media["duration_s"] == pytest.approx(43 / 30, abs=0.01)
    assert audio_stream_seconds(result.files["mp4"]) == pytest.approx(43 / 30, abs=0.01)
    assert decode_audio(result.files["wav"])[0].shape == (1, round(43 / 30 * RATE))


def test_a_picture_that_starts_after_its_sound_gets_a_soundtrack_from_its_own_start(tiny, tmp_path):
    """A camera's clip whose 2 s picture starts 0.3 s after its sound: the new sound was made from the file's zero,
    over the picture's first frame repeated, and ran 2.3 s. The input's sound is left out (mixed in from the
    picture's start with --mix), so the output is the picture as a player shows it: both start at 0, 2.0 s long."""
    clip = write_late_streams(tmp_path / "late.mkv", 0.3, 0.0, frames=20, audio_seconds=2.3,
                              audio_codec="pcm_s16le").path
    out = tmp_path / "late_soundtrack.mkv"
    done = run_here("soundtrack", clip, "-o", out, "-m", tiny, "--steps", "1", "--mix", "0.5",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert [data for _, data in packets(out, "video")] == [data for _, data in packets(clip, "video")]
    info = probe(out)
    assert (info.video_start, info.audio_start) == (0.0, 0.0)
    assert info.audio_duration == pytest.approx(2.0, abs=0.025) and "2.00 s" in done.stderr


def test_a_browsers_recording_whose_header_declares_no_length_gets_a_soundtrack_for_all_of_it(tiny, tmp_path):
    """A WebM as a browser's MediaRecorder streams it (no duration in its header, no DURATION tags) was refused as
    `its video stream is empty`: a length not declared is found in its packets, never taken as 0."""
    clip = write_test_video(tmp_path / "recording.webm", seconds=1.0, size=(16, 16), codec="vp9", piped=True)
    out = tmp_path / "recording_soundtrack.mp4"
    done = run_here("soundtrack", clip.path, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert [data for _, data in packets(out, "video")] == [data for _, data in packets(clip.path, "video")]
    assert audio_stream_seconds(out) == pytest.approx(1.0, abs=0.03) and "1.00 s" in done.stderr


def test_mixing_in_a_sound_that_holds_nan_is_refused_naming_the_clip_before_any_sampling(tiny, tmp_path):
    """It failed with "ValueError: audio contains NaN or Inf values", exit 1, naming no file; then it was refused
    only after the whole sampling run, which the user waited for in vain."""
    sound = pattern_audio(0.5, RATE)
    sound[:, 3000:3100] = np.nan
    clip = write_test_video(tmp_path / "nanaudio.mkv", seconds=0.5, size=(16, 16), audio_codec="pcm_f32le",
                            samples=sound).path
    settings = SoundtrackSettings(model=str(tiny), steps=2, device="cpu", mix=0.5)
    reported = []
    with pytest.raises(MediaError, match=f"cannot read {clip}: its audio holds NaN or Inf samples"):
        soundtrack(clip, tmp_path / "so" / "nanaudio.mkv", settings, progress=reported.append)
    assert reported == []  # not one sampling step or window was spent on it
    assert not (tmp_path / "so").exists()


def test_the_readme_names_every_key_of_a_soundtrack_s_sidecar(scored):
    """The README's list of a soundtrack sidecar's keys lacked `wav`, which `--wav` adds."""
    import re

    from test_cli_generate import readme_generate_sidecar

    clip, _ = scored
    keys = set(json.loads(clip.path.with_name("my_clip_soundtrack.json").read_text()))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `my_clip_soundtrack.json` |"))
    assert keys <= set(readme_generate_sidecar()) | set(re.findall(r"`(\w+)`", row)), keys
