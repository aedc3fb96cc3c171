"""Swapping one track of a user's file: the kept track is untouched, the new one lines up with it in time."""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media_factory import (
    as_video,
    click_time,
    flash_frame,
    packets,
    pattern_audio,
    pattern_frame,
    write_test_audio,
    write_test_video,
    write_wide_clip,
)

from mmgen.data.synthetic import WorldConfig, render_batch
from mmgen.errors import MediaError, OutputExists
from mmgen.media import probe, read_audio, read_video, replace_audio, replace_video
from mmgen.media.containers import CONTAINERS
from mmgen.media.deliver import deliver
from mmgen.media.delivery import Delivery
from mmgen.media.encode import write_wav
from mmgen.media.loudness import integrated_loudness
from mmgen.media.probe import pixel_aspect

RATE = 16000


def tone(seconds: float, hz: float, click_at: float | None = None) -> torch.Tensor:
    return torch.from_numpy(pattern_audio(seconds, RATE, tone_hz=hz, click_at=click_at))  # (1, L)


def level_at(audio: torch.Tensor, hz: int) -> float:
    """Amplitude of the `hz` component of (1, L) audio of a whole number of seconds."""
    return float(torch.fft.rfft(audio[0]).abs()[hz * audio.shape[1] // RATE] / (audio.shape[1] / 2))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """7.3 s of 30 fps 320×240 H.264 (with B-frames) and stereo AAC at 440/880 Hz."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_test_video(path, seconds=7.3, fps=30, size=(240, 320), channels=2)


def test_a_new_soundtrack_keeps_the_video_packets_byte_for_byte(long_clip, tmp_path):
    out = tmp_path / "scored.mp4"
    replace_audio(long_clip.path, tone(5.0, 1000), RATE, out)

    assert packets(out, "video") == packets(long_clip.path, "video")
    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.audio_channels) == ("h264", "aac", 1)
    assert info.audio_duration == pytest.approx(7.3, abs=0.05)
    sound = read_audio(out, RATE)
    assert sound.shape[1] == pytest.approx(7.3 * RATE, abs=0.05 * RATE)
    assert level_at(sound[:, :RATE], 1000) == pytest.approx(0.1, rel=0.15)
    assert sound[:, 5 * RATE + 800 :].abs().max() < 0.01  # padded with silence after the 5 s given


def test_a_new_soundtrack_lines_up_with_the_picture(tmp_path):
    """The source flashes at 0.7 s; the new audio clicks at 0.7 s; both must still coincide in the output."""
    source = write_test_video(tmp_path / "flash.mp4", seconds=2.0, fps=30, flash_at=0.7)
    out = tmp_path / "out.mp4"
    replace_audio(source.path, tone(2.0, 440, click_at=0.7), RATE, out)

    assert flash_frame(read_video(out, 30, (32, 32))) == 21
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(0.7, abs=0.005)


def test_surround_sound_re_encoded_for_an_mp4_says_it_is_mixed_to_stereo(tmp_path, caplog):
    surround = write_test_audio(tmp_path / "surround.wav", seconds=0.5, channels=6, codec="pcm_s16le").path
    with caplog.at_level(logging.WARNING, logger="mmgen.media"):
        replace_video(surround, torch.zeros(5, 3, 16, 16), 10, tmp_path / "out.mp4")
    assert ("surround.wav: pcm_s16le audio cannot go into mp4 as is; re-encoding it (a .mov or .mkv output would "
            "keep it); its 6 channels are mixed to stereo") in caplog.text
    assert probe(tmp_path / "out.mp4").audio_channels == 2


def test_kept_sound_of_more_channels_than_ffmpeg_mixes_is_copied_or_refused_naming_its_file(tmp_path):
    """65 channels of PCM under new pictures: a .mkv keeps them byte for byte (nothing is mixed); an .mp4, which
    must re-encode them to stereo, failed as "cannot write out.mp4: Invalid argument" — blaming the output — where
    reading the same file for its sound says what is wrong with it. The pipelines read the sound first (animate,
    retake, soundtrack --mix: refused there), so this is the remux functions' own promise."""
    wide = write_wide_clip(tmp_path / "wide.mkv", 65)
    replace_video(wide, torch.zeros(10, 3, 16, 16), 10, tmp_path / "kept.mkv")
    assert packets(tmp_path / "kept.mkv", "audio") == packets(wide, "audio")
    with pytest.raises(MediaError) as refused:
        replace_video(wide, torch.zeros(10, 3, 16, 16), 10, tmp_path / "mixed.mp4")
    assert str(refused.value) == (f"cannot read {wide}: its audio has 65 channels, more than the 64 FFmpeg's "
                                  "resampler mixes to stereo")
    assert not (tmp_path / "mixed.mp4").exists()


def test_a_video_mp4_cannot_hold_is_re_encoded_with_a_warning(tmp_path, caplog):
    source = write_test_video(tmp_path / "edit.mov", seconds=1.0, fps=25, codec="prores", flash_at=0.48)
    out = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="mmgen.media"):
        replace_audio(source.path, tone(1.0, 440, click_at=0.48), RATE, out)

    assert "prores video cannot go into mp4 as is; re-encoding it (a .mov or .mkv output would keep it)" in caplog.text
    info = probe(out)
    assert (info.video_codec, info.frames, info.fps) == ("h264", 25, 25.0)
    assert flash_frame(read_video(out, 25, (32, 32))) == 12
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(0.48, abs=0.005)


@pytest.mark.parametrize("suffix, codec", [(".mp4", "h264"), (".mov", "prores")])
def test_an_anamorphic_picture_keeps_its_shape_copied_or_re_encoded(tmp_path, suffix, codec):
    """A DV-shaped 48×64 picture of pixels shown 8/9 as wide: the soundtracked file is shown the same shape."""
    source = write_test_video(tmp_path / f"dv{suffix}", seconds=0.5, fps=25, size=(48, 64), codec=codec,
                              pixel_aspect=Fraction(8, 9))  # fmt: skip
    out = tmp_path / "out.mp4"
    replace_audio(source.path, tone(0.5, 440), RATE, out)
    with av.open(str(out)) as container:
        assert pixel_aspect(container.streams.video[0]) == Fraction(8, 9)


def test_new_pictures_over_an_aac_track_copy_its_packets(tmp_path):
    source = write_test_audio(tmp_path / "song.m4a", seconds=3.0, channels=2, click_at=0.7)
    video = as_video(np.stack([pattern_frame(k, (64, 64)) for k in range(20)]))
    video[7] = 1.0  # the flash at 0.7 s
    out = tmp_path / "animated.mp4"
    replace_video(source.path, video, 10, out)

    kept, original = packets(out, "audio"), packets(source.path, "audio")
    assert kept == original[: len(kept)]  # the same packets, cut where the 2 s of video end
    info = probe(out)
    assert (info.audio_channels, info.frames) == (2, 20)
    assert info.audio_duration == pytest.approx(2.0, abs=1024 / RATE)
    assert flash_frame(read_video(out, 10, (64, 64))) == 7
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(0.7, abs=0.005)


def test_new_pictures_over_an_mp3_copy_its_packets(tmp_path):
    source = write_test_audio(tmp_path / "song.mp3", seconds=3.0, click_at=0.7)
    out = tmp_path / "animated.mp4"
    replace_video(source.path, torch.zeros(20, 3, 32, 32), 10, out)

    kept, original = [[data for _, data in packets(f, "audio")] for f in (out, source.path)]
    assert probe(out).audio_codec == "mp3"
    assert kept == original[: len(kept)] and len(kept) >= len(original) // 2
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(0.7, abs=0.005)


def test_the_readme_names_exactly_the_audio_codecs_animate_copies():
    """README: "(AAC and MP3 are copied packet for packet, ...)" — the same set as the code's."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Animate a sound", 1)[1].split("\n#", 1)[0]
    named = re.search(r"\(([^()]*?) (?:is|are) copied", section)
    assert named, section
    codecs = {word.lower() for word in re.findall(r"[A-Z][A-Z0-9]+", named.group(1))}
    assert codecs == CONTAINERS[".mp4"].audio_copy


def test_new_pictures_over_a_wav_re_encode_it_in_time(tmp_path):
    source = write_test_audio(tmp_path / "voice.wav", seconds=2.0, sample_rate=22050, click_at=1.3)
    video = torch.zeros(20, 3, 32, 32)
    out = tmp_path / "animated.mp4"
    replace_video(source.path, video, 10, out)

    info = probe(out)
    assert (info.audio_codec, info.sample_rate) == ("aac", 22050)
    assert click_time(read_audio(out, RATE), RATE) == pytest.approx(1.3, abs=0.005)


def test_new_pictures_over_a_sound_with_a_gap_fill_it_with_silence(tmp_path):
    """A Matroska sound whose timestamps jump 1.5 s after its first second (3 s of samples over 4.5 s) came out of
    the re-encode with the jump kept (one AAC packet lasting 1.52 s): a player counting samples ran 1.5 s early
    after it. The gap is silence, as read_audio and --loudness make it."""
    source, rate = tmp_path / "gap.mka", 48000
    sound = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)
    with av.open(str(source), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for k in range(0, len(sound), 1024):
            frame = av.AudioFrame.from_ndarray(sound[None, k : k + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.time_base = rate, Fraction(1, rate)
            frame.pts = k + (rate * 3 // 2 if k >= rate else 0)  # the hole: 1.5 s after the first second
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = tmp_path / "animated.mp4"
    replace_video(source, torch.zeros(45, 3, 16, 16), 10, out)

    with av.open(str(out)) as container:
        decoded = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])
    assert len(decoded) == pytest.approx(4.5 * rate, abs=2048)  # every sample of 4.5 s, not 3 s of them
    assert np.abs(decoded[round(1.2 * rate) : round(2.4 * rate)]).max() < 0.01  # the gap: silence
    assert np.abs(decoded[round(2.6 * rate) : round(4.4 * rate)]).max() > 0.25  # the rest where it was stamped


def test_swapping_needs_the_kept_track_and_respects_existing_outputs(long_clip, tmp_path):
    silent = write_test_video(tmp_path / "silent.mp4", seconds=0.5, audio=False)
    sound = write_test_audio(tmp_path / "sound.wav", seconds=0.5)
    with pytest.raises(MediaError, match="sound.wav: it has no video stream"):
        replace_audio(sound.path, tone(0.5, 440), RATE, tmp_path / "a.mp4")
    with pytest.raises(MediaError, match="silent.mp4: it has no audio stream"):
        replace_video(silent.path, torch.zeros(5, 3, 16, 16), 10, tmp_path / "b.mp4")

    existing = tmp_path / "mine.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputExists):
        replace_audio(long_clip.path, tone(1.0, 440), RATE, existing)
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.mp4", "silent.mp4", "sound.wav"]


def test_a_source_that_fails_to_read_while_it_is_copied_is_named_not_the_output(tmp_path, monkeypatch):
    """An I/O error demuxing the source of a remux (a soundtrack's video, copied packet by packet into the new file)
    said `cannot write OUT: Input/output error`; it is the source's, exit 1, and no output appears."""
    import errno

    from mmgen.errors import StorageError
    from mmgen.media import remux

    source = write_test_video(tmp_path / "clip.mp4", seconds=1.0, fps=10).path
    out = tmp_path / "scored.mp4"
    copied = remux.copied

    def failing(container, *args):  # PyAV's own error for a failed read, naming the file, after a few packets
        for n, packet in enumerate(copied(container, *args)):
            if n == 3:
                av.error.err_check(-errno.EIO, container.name)
            yield packet

    monkeypatch.setattr(remux, "copied", failing)
    with pytest.raises(StorageError, match=f"^cannot read {source}: Input/output error") as raised:
        replace_audio(source, tone(1.0, 440), RATE, out)
    assert raised.value.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]



def test_new_pictures_over_a_loud_wav_keep_its_loudness_and_its_shape(tmp_path):
    # the demo world's loud sine bursts at −16 LUFS, a wav a user animates: re-encoded to AAC at its own rate and
    # level (FFmpeg's default AAC coder gave it back 1.2 LU louder, at 19 dB signal to noise)
    bursts = torch.cat([clip.audio for clip in render_batch(WorldConfig(frames=8, size=16), 2, seed=1)], dim=1)
    wav = deliver(bursts, 16000, Delivery()).audio
    write_wav(tmp_path / "bursts.wav", wav, 48000)
    out = tmp_path / "bursts.mp4"
    replace_video(tmp_path / "bursts.wav", torch.zeros(16, 3, 16, 16), 10, out)

    heard = read_audio(out, 48000)[:, : wav.shape[1]].double()
    wav = read_audio(tmp_path / "bursts.wav", 48000).double()
    assert integrated_loudness(heard, 48000) == pytest.approx(integrated_loudness(wav, 48000), abs=0.2)
    noise = (heard - wav).square().sum()
    assert 10 * torch.log10(wav.square().sum() / noise) > 30  # dB: the wav's sound, not a coarser one



def millisecond_clip(path: Path, encoder: str) -> Path:
    """1 s of 25 fps picture whose encoder ran on a millisecond clock, as phones' and other tools' do (an H.264
    stream's own timing then says 1000 fps): the rate is declared by the container alone."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k in range(25):
            frame = av.VideoFrame.from_ndarray(pattern_frame(k, (64, 64)), format="rgb24")
            frame.pts, frame.time_base = 40 * k, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("suffix, encoder", [(".mkv", "libx264"), (".webm", "libvpx-vp9"), (".mov", "libx264"),
                                             (".mp4", "libx264")])
def test_a_copied_picture_keeps_its_frame_rate_and_frame_durations(tmp_path, suffix, encoder):
    clip = millisecond_clip(tmp_path / f"clip{suffix}", encoder)
    out = tmp_path / f"scored{suffix}"
    replace_audio(clip, tone(1.0, 440), RATE, out)

    assert packets(out, "video") == packets(clip, "video")  # copied
    with av.open(str(out)) as written:
        stream = written.streams.video[0]
        durations = {round(float(p.duration * p.time_base), 6) for p in written.demux(stream) if p.size}
        assert stream.average_rate == 25  # not 1000
    assert durations == {0.04}  # not 0
