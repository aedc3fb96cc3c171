"""Reading any user file into the model's clip format: right frames at the right times, upright, fitted, and
mono audio at the model's rate with events where they happened."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media_factory import (
    TONE_AMPLITUDE,
    blue_levels,
    click_time,
    encoder_available,
    frame_level,
    pattern_audio,
    pattern_frame,
    write_late_streams,
    write_many_streams,
    write_test_audio,
    write_test_video,
)
from mmgen_cli import mmgen_env

from mmgen.errors import MediaError
from mmgen.media import probe, read_audio, read_video, write_mp4
from mmgen.media.decode import within_full_scale
from mmgen.media.fitting import rotate_upright
from mmgen.media.probe import frame_gaps
from mmgen.media.remux import replace_audio, video_end

# Blue levels are 8 apart, so 3.5 still tells neighbours apart. Lossy 4:2:0 coding of a small picture moves a
# flat channel by 1-3 levels; FFmpeg's chroma interpolation (mmgen.media.fitting) lands a frame up to ~3.1 off.
LEVEL_TOLERANCE = 3.5


def expected_levels(source_frames: list[int]) -> np.ndarray:
    return np.array([frame_level(k) for k in source_frames], dtype=float)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """7.3 s of 30 fps 320×240 H.264 (with B-frames) and stereo AAC."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_test_video(path, seconds=7.3, fps=30, size=(240, 320), channels=2)


def test_a_30fps_clip_is_resampled_to_10fps_by_time(long_clip):
    video = read_video(long_clip.path, fps=10, size=(64, 64))
    assert video.shape == (73, 3, 64, 64)
    # Output frame k is the source frame on screen at k/10 s: source frame 3k.
    np.testing.assert_allclose(
        blue_levels(video), expected_levels([3 * k for k in range(73)]), atol=LEVEL_TOLERANCE
    )


def test_a_window_of_a_clip_starts_and_stops_where_asked(long_clip):
    video = read_video(long_clip.path, fps=10, size=(32, 32), start=5.0, duration=1.6)
    assert video.shape == (16, 3, 32, 32)
    np.testing.assert_allclose(
        blue_levels(video), expected_levels([150 + 3 * k for k in range(16)]), atol=LEVEL_TOLERANCE
    )


def test_a_variable_frame_rate_clip_shows_the_frame_on_screen_at_each_tick(tmp_path):
    times = [0.0, 0.05, 0.3, 0.32, 0.9, 1.5]  # a phone dropping frames
    clip = write_test_video(tmp_path / "vfr.mp4", seconds=1.6, frame_times=times, audio=False)
    video = read_video(clip.path, fps=10, size=(32, 32))
    shown = [max(i for i, t in enumerate(times) if t <= k / 10 + 1e-9) for k in range(len(video))]
    assert len(video) == 16
    assert shown == [0, 1, 1, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5]
    np.testing.assert_allclose(blue_levels(video), expected_levels(shown), atol=LEVEL_TOLERANCE)


def test_a_variable_frame_rate_clip_ends_one_frame_after_its_last_frame_whatever_its_packets_claim(tmp_path):
    """libx264 through PyAV into an mp4 stores decode-order gaps as packet durations: here the frame at 40/30 s
    claims 0.97 s. The clip still ends 1/30 s after its last frame at 42/30 s (its soundtrack was 2.33 s long)."""
    ticks = [0, 1, 2, 10, 11, 40, 41, 42]
    clip = write_test_video(tmp_path / "vfr.mp4", size=(16, 16), frame_times=[t / 30 for t in ticks],
                            time_base=Fraction(1, 30), audio_seconds=1.5)
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        claims = [float(p.duration * stream.time_base) for p in container.demux(stream) if p.size]
    assert max(claims) > 0.9  # the lie is in the file
    assert video_end(clip.path) == pytest.approx(43 / 30, abs=1e-3)
    video = read_video(clip.path, fps=10, size=(16, 16))
    assert len(video) == 15  # 0, 0.1, ..., 1.4 s
    shown = [max(i for i, t in enumerate(ticks) if t / 30 <= k / 10 + 1e-9) for k in range(15)]
    np.testing.assert_allclose(blue_levels(video), expected_levels(shown), atol=LEVEL_TOLERANCE)


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("hevc.mkv", "hevc"),
        ("vp9.webm", "vp9"),
        ("h264.mkv", "h264"),
        ("h264.mov", "h264"),
        ("mpeg4.avi", "mpeg4"),
        ("prores.mov", "prores"),
    ],
)
def test_common_containers_and_codecs_decode_the_same(tmp_path, name, codec):
    if not encoder_available(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    clip = write_test_video(tmp_path / name, seconds=1.0, fps=25, size=(48, 64), codec=codec)
    assert probe(clip.path).video_codec == codec
    video = read_video(clip.path, fps=10, size=(32, 32))
    assert video.shape == (10, 3, 32, 32)
    np.testing.assert_allclose(
        blue_levels(video), expected_levels([int(k * 2.5) for k in range(10)]), atol=LEVEL_TOLERANCE
    )
    # Only mp4/mov record where AAC's last frame stops being padding: elsewhere up to one frame (1024) more.
    assert read_audio(clip.path, 16000).shape[1] == pytest.approx(16000, abs=1024)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_rotated_phone_clip_is_turned_upright(tmp_path, rotation):
    """The file stores 48×64 (H×W) pictures plus a display matrix; players show them turned."""
    clip = write_test_video(
        tmp_path / "phone.mp4", seconds=0.3, size=(48, 64), rotation=rotation, audio=False
    )
    info = probe(clip.path)
    assert info.rotation == rotation
    upright = np.rot90(pattern_frame(0, (48, 64)), k=rotation // 90)  # counter-clockwise, as players do
    assert (info.height, info.width) == upright.shape[:2]

    video = read_video(clip.path, fps=10, size=upright.shape[:2])
    decoded = ((video[0].permute(1, 2, 0) + 1) * 127.5).numpy()
    assert np.abs(decoded - upright).mean() < 4


def test_rotate_upright_turns_counter_clockwise():
    image = torch.tensor([[1, 2], [3, 4]])
    assert rotate_upright(image, 90).tolist() == [[2, 4], [1, 3]]
    assert rotate_upright(image, 180).tolist() == [[4, 3], [2, 1]]
    assert rotate_upright(image, 270).tolist() == [[3, 1], [4, 2]]


def test_a_wide_picture_is_centre_cropped_or_letterboxed(long_clip):
    cropped = read_video(long_clip.path, fps=10, size=(64, 64), duration=0.1)[0]
    padded = read_video(long_clip.path, fps=10, size=(64, 64), duration=0.1, fit="pad")[0]
    red = lambda image: (image[0] + 1) * 127.5  # noqa: E731  (the red ramp runs 0..255 across the source width)
    # Crop keeps source columns 40..279 of 320: the red ramp starts and ends inside (32, 223).
    assert red(cropped)[:, 0].mean() == pytest.approx(32, abs=6) and red(cropped)[
        :, -1
    ].mean() == pytest.approx(223, abs=6)
    # Pad keeps the whole width (red 0..255) and puts 8 black rows above and below the 48 picture rows.
    assert red(padded)[20:40, 0].mean() < 6 and red(padded)[20:40, -1].mean() > 249
    assert (padded[:, :8] == -1).all() and (padded[:, -8:] == -1).all() and (padded[:, 8:56] > -1).any()


def test_an_anamorphic_clip_is_fitted_as_it_is_shown(tmp_path):
    """DV, DVD and HDV store pictures in pixels that are not square. A 48×64 picture of pixels shown 3/4 as wide as
    tall looks square: a square model frame keeps all of it (cropping the stored pixels would cut a quarter off).
    A 48×48 picture of pixels shown 4/3 as wide looks 64 wide: padded, it is letterboxed as a 48×64 one is."""
    red = lambda image: (image[0] + 1) * 127.5  # noqa: E731  (the red ramp runs 0..255 across the stored width)
    dv = write_test_video(tmp_path / "dv.mp4", seconds=0.3, size=(48, 64), pixel_aspect=Fraction(3, 4), audio=False)
    square = read_video(dv.path, fps=10, size=(32, 32))[0]
    assert red(square)[:, 0].mean() < 12 and red(square)[:, -1].mean() > 243

    hdv = write_test_video(
        tmp_path / "hdv.mp4", seconds=0.3, size=(48, 48), pixel_aspect=Fraction(4, 3), audio=False
    )
    padded = read_video(hdv.path, fps=10, size=(64, 64), fit="pad")[0]
    picture_rows = (padded > -1).any(dim=0).any(dim=1)
    assert picture_rows.tolist() == [False] * 8 + [True] * 48 + [False] * 8
    cropped = read_video(hdv.path, fps=10, size=(48, 64))[0]  # shown 48×64: nothing to crop
    assert red(cropped)[:, 0].mean() < 12 and red(cropped)[:, -1].mean() > 243


def test_stereo_audio_becomes_mono_keeping_both_channels(long_clip):
    """Left carries 440 Hz, right 880 Hz: the mono mix must hold both, at half their level."""
    audio = read_audio(long_clip.path, 16000, duration=1.0)[0]
    assert audio.shape == (16000,)
    spectrum = torch.fft.rfft(audio).abs() / (len(audio) / 2)  # 1 Hz bins, amplitude scale
    assert spectrum[440] == pytest.approx(0.05, rel=0.15)
    assert spectrum[880] == pytest.approx(0.05, rel=0.15)


def test_7_1_audio_becomes_mono_keeping_all_eight_channels(tmp_path):
    """Channel c carries 440·(c+1) Hz. Read in a subprocess: PyAV's planar 8-channel path segfaulted."""
    write_test_audio(tmp_path / "surround.wav", seconds=1.0, sample_rate=8000, channels=8, codec="pcm_s16le")
    script = (
        "import sys, numpy; from mmgen.media import read_audio; "
        "numpy.save(sys.argv[2], read_audio(sys.argv[1], 16000)[0].numpy())"
    )
    out = tmp_path / "mono.npy"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "surround.wav"), str(out)],
                          env=mmgen_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    audio = torch.from_numpy(np.load(out))
    assert audio.shape == (16000,)
    spectrum = torch.fft.rfft(audio).abs() / (len(audio) / 2)  # 1 Hz bins, amplitude scale
    for c in range(8):
        assert spectrum[440 * (c + 1)] == pytest.approx(TONE_AMPLITUDE / 8, rel=0.15)


@pytest.mark.parametrize(
    ("name", "rate"),
    [("click.wav", 16000), ("click.webm", 48000), ("click.mp3", 44100), ("click.m4a", 22050)],
)
def test_audio_is_resampled_without_moving_events(tmp_path, name, rate):
    clip = write_test_audio(tmp_path / name, seconds=2.0, sample_rate=rate, click_at=0.7)
    audio = read_audio(clip.path, 16000)
    assert audio.shape[1] == pytest.approx(32000, abs=16)
    assert click_time(audio, 16000) == pytest.approx(0.7, abs=0.005)
    later = read_audio(clip.path, 16000, start=0.5, duration=1.0)
    assert later.shape == (1, 16000)
    assert click_time(later, 16000) == pytest.approx(0.2, abs=0.005)


def test_aac_reads_the_same_from_mkv_as_from_mp4(tmp_path):
    """The same AAC frames in both containers. From the mkv they read 960 samples (20 ms) long: the encoder's
    padding of the last frame was trimmed only for mp4, and frames were placed at their millisecond timestamps, 16
    samples apart from where the previous one ended. The honest bound on a length is the containers' clock, 1 ms
    (48 samples here): an MP4 edit list (movie timescale) and a Matroska track's DURATION tag both count ms; the
    priming (1024 samples) is dropped exactly in both, so the samples read are the same ones."""
    n = 40000  # 0.8333 s at 48 kHz: not a whole number of milliseconds, nor of 1024-sample AAC frames
    read = {}
    for suffix in (".mp4", ".mkv"):
        clip = write_test_audio(tmp_path / f"tone{suffix}", n / 48000, 48000, codec="aac", click_at=0.5)
        assert probe(clip.path).audio_duration == pytest.approx(n / 48000, abs=0.001)
        for rate in (48000, 16000):
            read[suffix, rate] = read_audio(clip.path, rate)[0].numpy()
            assert len(read[suffix, rate]) == pytest.approx(n * rate / 48000, abs=rate / 1000)
            assert click_time(torch.from_numpy(read[suffix, rate])[None], rate) == pytest.approx(0.5, abs=0.002)
    for rate in (48000, 16000):
        np.testing.assert_array_equal(read[".mkv", rate], read[".mp4", rate])


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_opus_in_webm_below_48_khz_reads_as_long_as_it_was_written_and_in_step(tmp_path, rate):
    """What `-o clip.webm --sample-rate 16000` writes: Opus encoded from 16 kHz. FFmpeg counts the Opus pre-skip (312
    samples at 48 kHz) at the track's 16 kHz when it sets the stream's start, so the timeline began 13 ms late (8
    kHz: 32 ms) and the sound read that much short, its events early. Read back, it is the length written, to the
    sample, with the click where it was; probe agrees to the Matroska clock's 1 ms."""
    write_mp4(tmp_path / "tone.webm", None, torch.from_numpy(pattern_audio(1.0, rate, click_at=0.5)), 10.0, rate)
    audio = read_audio(tmp_path / "tone.webm", rate)
    assert audio.shape == (1, rate)  # 1 s
    assert click_time(audio, rate) == pytest.approx(0.5, abs=0.002)
    assert probe(tmp_path / "tone.webm").audio_duration == pytest.approx(1.0, abs=0.0015)


def with_track_at_48_khz(source: Path, path: Path) -> Path:
    """`source`'s packets copied into `path` (a stream copy): FFmpeg reads an Opus track's rate back as 48 kHz and
    writes that as its sampling frequency, its OpusHead still saying the rate the sound was encoded from."""
    with av.open(str(source)) as given, av.open(str(path), "w") as out:
        streams = {stream.index: out.add_stream_from_template(stream) for stream in given.streams}
        for packet in given.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return path


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("track_at_48_khz", [False, True])
def test_a_picture_beside_opus_in_matroska_lasts_as_long_as_it_was_written(tmp_path, suffix, rate, track_at_48_khz):
    """2.0 s at 10 fps beside Opus encoded from 16 kHz, in a track that says 48 kHz: the OpusHead's 16 kHz was
    taken for the rate FFmpeg counted the pre-skip at, so the timeline began 13 ms early, the picture ended at
    2.013 s and read 21 frames. FFmpeg's own files (the track at 16 kHz) and 48 kHz sound were right, and are."""
    source = tmp_path / f"source{suffix}"
    write_mp4(source, torch.zeros(20, 3, 16, 16), torch.from_numpy(pattern_audio(2.0, rate)), 10.0, rate,
              encoder="libopus")
    path = with_track_at_48_khz(source, tmp_path / f"clip{suffix}") if track_at_48_khz else source
    assert video_end(path) == pytest.approx(2.0, abs=1e-6)
    assert read_video(path, 10.0, (16, 16)).shape[0] == 20
    assert read_audio(path, rate).shape == (1, 2 * rate)


def spoiled(value: float, seconds: float = 0.5) -> np.ndarray:
    """A quiet tone with 100 samples set to `value`."""
    sound = pattern_audio(seconds, 16000)
    sound[:, 3000:3100] = value
    return sound


@pytest.mark.parametrize(
    ("name", "samples", "reason"),
    [
        ("nan.wav", spoiled(np.nan), "its audio holds NaN or Inf samples"),
        ("inf.wav", spoiled(np.inf), "its audio holds NaN or Inf samples"),
        ("loud.wav", pattern_audio(0.5, 16000) * 1e31, "its audio peaks at +600 dBFS"),
        ("nanaudio.mkv", spoiled(np.nan), "its audio holds NaN or Inf samples"),
    ],
)
def test_float_audio_no_sound_has_is_refused_naming_the_file(tmp_path, name, samples, reason):
    """NaN, Inf or 1e30 in a float track were blamed on the model ("sampling gave NaN") or the output ("cannot
    write out.mp4"); they are found where they are decoded, at any rate."""
    path = tmp_path / name
    if name.endswith(".wav"):
        write_test_audio(path, codec="pcm_f32le", samples=samples)
    else:
        write_test_video(path, seconds=0.5, size=(16, 16), audio_codec="pcm_f32le", samples=samples)
    for rate in (16000, 48000):
        with pytest.raises(MediaError, match=re.escape(f"cannot read {path}: {reason}")):
            read_audio(path, rate)


def test_float_audio_past_full_scale_is_kept_where_a_file_holds_it_and_clipped_for_the_model(tmp_path, caplog):
    """A float sound at +12 dBFS was clipped as it was read: a loudness target turned a clipped sound down, a
    retake's f32 track lost its peaks outside the ranges. It is read as it is, an f32 track keeps it; only the model
    is given it clipped, with a note of its real peak."""
    path = write_test_video(tmp_path / "hot.mkv", seconds=0.5, size=(16, 16), audio_codec="pcm_f32le",
                            samples=pattern_audio(0.5, 16000) * 40).path  # peak 4
    audio = read_audio(path, 16000)
    assert audio.abs().max() == pytest.approx(4, rel=0.01)
    replace_audio(path, audio, 16000, tmp_path / "out.mkv", encoder="pcm_f32le")
    assert torch.equal(read_audio(tmp_path / "out.mkv", 16000), audio)
    with caplog.at_level(logging.WARNING):
        assert within_full_scale(audio, path).abs().max() == 1
    assert f"{path}: its audio peaks at +12.0 dBFS, above full scale; the model is given it clipped" in caplog.text


def test_a_file_with_several_streams_says_which_one_is_read(tmp_path, caplog):
    """2 video and 2 audio streams (the second audio stream an octave up): the first of each is read, and said;
    6 channels mixed to mono are said too."""
    path = write_many_streams(tmp_path / "angles.mkv", videos=2, audios=2)
    surround = write_test_audio(tmp_path / "surround.wav", seconds=0.5, channels=6, codec="pcm_s16le").path
    with caplog.at_level(logging.WARNING):
        read_video(path, fps=10, size=(16, 16))
        audio = read_audio(path, 16000)[0, :8000]
        read_audio(surround, 16000)
        read_audio(path, 16000)
    spectrum = torch.fft.rfft(audio).abs() / (len(audio) / 2)  # 2 Hz bins
    assert spectrum[220] > 0.05 and spectrum[440] < 0.01  # 440 Hz: stream 0
    assert caplog.messages == [
        f"{path}: using video stream 0 of 2; the others are left out",
        f"{path}: using audio stream 0 of 2; the others are left out",
        f"{surround}: its 6-channel audio is mixed to mono",
    ]  # each once


@pytest.mark.parametrize("mkvmerge", [False, True])
@pytest.mark.parametrize(("video_start", "audio_start"), [(3.5, 3.5), (0.0, 0.5)])
def test_matroska_streams_starting_late_read_whole(tmp_path, video_start, audio_start, mkvmerge):
    """FFmpeg's Matroska muxer writes each track's DURATION tag as where the track ENDS on the file's timeline; it
    was read as a length and added to the track's start, so a clip whose streams start after 0 was refused as cut
    short ("its video stops at 4.50 s of 8.00 s"). mkvmerge's tag of the same name (a track in no language) is the
    length itself: it was read as an end, and the track came out short by its start (0.52 s of a 1 s sound)."""
    clip = write_late_streams(tmp_path / "late.mkv", video_start, audio_start, frames=10, audio_seconds=1.0,
                              mkvmerge_tags=mkvmerge)
    with av.open(str(clip.path)) as container:  # the file holds the tags of the writer it imitates
        assert [dict(s.metadata).get("_STATISTICS_WRITING_APP", "")[:8] for s in container.streams] == \
            ["mkvmerge" if mkvmerge else ""] * 2 and "DURATION" in container.streams[0].metadata
    info = probe(clip.path)
    assert info.video_duration == pytest.approx(1.0, abs=0.002)
    assert info.audio_duration == pytest.approx(1.0, abs=0.002)
    origin = min(video_start, audio_start)  # both are read from the earlier start
    assert read_video(clip.path, 10, (16, 16)).shape[0] == 10 + round((video_start - origin) * 10)
    assert read_audio(clip.path, 16000).shape[1] == pytest.approx(16000 * (1 + audio_start - origin), abs=16)


@pytest.mark.parametrize(
    ("name", "times", "time_base", "rate"),
    [
        ("ms.mkv", [k / 30 for k in range(30)], None, 30),  # Matroska's 1 ms clock: 33 and 34 ms gaps (said 30.03)
        ("ntsc.mkv", [k * 1001 / 30000 for k in range(30)], None, Fraction(30000, 1001)),
        ("dropped.avi", [k / 30 for k in range(31) if k != 7], Fraction(1, 30), 30),  # a frame missing (said 29.03)
    ],
)
def test_a_steady_clips_rate_is_the_one_its_frame_gaps_round_to(tmp_path, name, times, time_base, rate):
    """The summary's and the sidecar's fps, and `retake --video`'s check, are the rational rate the frames' gaps round
    to within the clock's precision (frame_times.steady_rate), not FFmpeg's average of frames over the duration."""
    clip = write_test_video(tmp_path / name, size=(16, 16), frame_times=times, time_base=time_base,
                            codec="mpeg4" if name.endswith(".avi") else "h264", audio=False)
    assert probe(clip.path).fps == float(rate)
    assert frame_gaps(clip.path).rate == rate


def test_a_frame_dropped_from_a_steady_clip_on_a_millisecond_clock_is_missing_not_a_varying_rate(tmp_path):
    """30 fps in ms (0, 33, 67, 100, then 167: the frame at 133 dropped) read as frames 33 to 67 ms apart, a
    variable rate; it is a steady 30 fps with a frame missing at 0.133 s."""
    times = [k / 30 for k in range(30) if k != 4]
    clip = write_test_video(tmp_path / "phone.mkv", size=(16, 16), frame_times=times, audio=False)
    gaps = frame_gaps(clip.path)
    assert not gaps.varies and gaps.rate == 30 and gaps.missing == pytest.approx((4 / 30,), abs=0.001)
    assert (gaps.shortest, gaps.longest) == (0.033, 0.034)


def test_a_long_aac_matroska_file_reads_whole_and_one_cut_short_is_still_refused(tmp_path):
    """FFmpeg, probing a longer Matroska file only in part (its sound after 10 s of picture here), gives its AAC
    track the segment's duration, which counts the encoder's 1024-sample priming (128 ms at 8 kHz): a whole 60 s
    file was refused as `cut short: its audio stops at 60.03 s of 60.13 s` (a 20 s one read 768 samples of padding
    too many). The track's DURATION tag, less the priming (timeline.tagged_length), is its end."""
    path = tmp_path / "long.mkv"
    with av.open(str(path), "w") as container:  # written as the probe's file was: the picture, then the sound
        video, audio = container.add_stream("mpeg4", rate=10), container.add_stream("aac", rate=8000)
        video.width = video.height = 16
        audio.layout = "mono"
        for k in range(600):
            container.mux(video.encode(av.VideoFrame.from_ndarray(pattern_frame(k, (16, 16)), format="rgb24")))
        container.mux(video.encode(None))
        tone = (np.sin(np.arange(60 * 8000) * 0.3) / 2).astype(np.float32)
        for start in range(0, len(tone), 1024):
            sound = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 8000, start
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    assert av.open(str(path)).streams.audio[0].duration  # the segment's: what the track's end was once taken from
    assert read_audio(path, 8000).shape == (1, 60 * 8000)
    assert probe(path).audio_duration == pytest.approx(60, abs=0.001)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 9 // 10])
    with pytest.raises(MediaError, match=r"the file is cut short: its audio stops at 5\d\.\d\d s of 60\.00 s"):
        read_audio(cut, 8000)
