"""Writing clips: what write_mp4 / write_wav produce decodes back to what was written, at the right times."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from media_factory import as_video, click_time, flash_frame, pattern_audio, pattern_frame

from mmgen.media import (
    contact_sheet_png,
    probe,
    read_audio,
    read_video,
    replace_audio,
    spectrogram_png,
    write_mp4,
    write_wav,
)

FPS, RATE = 10, 16000
AAC_FRAME = 1024  # samples


def clip(flash: int | None = None, click_at: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The official clip shape: 16 frames of 64×64 at 10 fps and 1.6 s of 16 kHz audio."""
    video = as_video(np.stack([pattern_frame(k, (64, 64)) for k in range(16)]))
    if flash is not None:
        video[flash] = 1.0
    return video, torch.from_numpy(pattern_audio(1.6, RATE, tone_hz=440.0, click_at=click_at))


def test_an_mp4_round_trip_keeps_frames_sound_and_durations(tmp_path):
    video, audio = clip()
    path = tmp_path / "clip.mp4"
    write_mp4(path, video, audio, FPS, RATE)

    info = probe(path)
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.frames, info.fps, info.width, info.height) == (16, 10.0, 64, 64)
    assert info.audio_duration == pytest.approx(1.6, abs=AAC_FRAME / RATE)

    decoded = read_video(path, FPS, (64, 64))
    assert decoded.shape == video.shape
    error = (decoded - video).abs()
    # H.264 at crf 18 plus 4:2:0 chroma: on average within ~2 of 255 levels, nowhere off by more than ~20.
    assert error.mean() < 0.03 and error.max() < 0.16

    sound = read_audio(path, RATE)
    assert sound.shape == (1, 25600)
    snr = 10 * torch.log10(audio.pow(2).mean() / (sound - audio).pow(2).mean())
    assert snr > 25  # dB; AAC at 128 kb/s on a pure tone is far better than that


def test_sound_and_picture_stay_in_sync_through_an_mp4(tmp_path):
    """The click and the flash both happen at 0.7 s. Without AAC priming in the edit list the click would be
    found ~64 ms late; without timestamp-based frame picking the flash could move."""
    video, audio = clip(flash=7, click_at=0.7)
    path = tmp_path / "sync.mp4"
    write_mp4(path, video, audio, FPS, RATE)

    assert click_time(read_audio(path, RATE), RATE) == pytest.approx(0.7, abs=0.005)
    assert flash_frame(read_video(path, FPS, (64, 64))) == 7
    # Reading from a later start measures from there.
    assert click_time(read_audio(path, RATE, start=0.25), RATE) == pytest.approx(0.45, abs=0.005)
    assert flash_frame(read_video(path, FPS, (64, 64), start=0.4, duration=0.8)) == 3


@pytest.mark.parametrize("rate, samples", [(48000, 40000), (44100, 77777)])
def test_sound_reads_back_as_long_as_it_was_written_to_the_sample(tmp_path, rate, samples):
    """An mp4 counted its movie time in milliseconds, so its edit list ended the sound up to half a millisecond
    off: 40000 samples at 48 kHz read back as 39984, 77777 at 44.1 kHz as 77748 (a retake's unchanged sound
    came back that far from the input's). Written new (write_mp4) and under a kept picture (replace_audio)."""
    tone = torch.from_numpy(pattern_audio(samples / rate, rate))
    picture = torch.zeros(5, 3, 16, 16)
    write_mp4(tmp_path / "new.mp4", picture, tone, FPS, rate)
    replace_audio(tmp_path / "new.mp4", tone[:, : samples - 1000], rate, tmp_path / "kept.mp4", end_together=False)
    assert read_audio(tmp_path / "new.mp4", rate).shape == (1, samples)
    assert read_audio(tmp_path / "kept.mp4", rate).shape == (1, samples - 1000)
    assert probe(tmp_path / "new.mp4").audio_duration == pytest.approx(samples / rate, abs=0.5 / rate)
    assert read_video(tmp_path / "kept.mp4", FPS, (16, 16)).shape[0] == 5


def test_audio_alone_and_odd_sized_video_alone_are_written(tmp_path):
    video, audio = clip()
    write_mp4(tmp_path / "sound.mp4", None, audio, FPS, RATE)
    write_mp4(tmp_path / "odd.mp4", video[:, :, :63, :61], None, FPS, RATE)

    sound = probe(tmp_path / "sound.mp4")
    assert (sound.has_video, sound.has_audio) == (False, True)
    odd = probe(tmp_path / "odd.mp4")
    assert (odd.has_video, odd.has_audio, odd.width, odd.height) == (True, False, 62, 64)  # padded to even
    picture = read_video(tmp_path / "odd.mp4", FPS, (64, 62))
    assert (picture[:, :, :63, :61] - video[:, :, :63, :61]).abs().mean() < 0.03


def test_a_wav_holds_16_bit_samples_exactly(tmp_path):
    _, audio = clip(click_at=0.3)
    path = tmp_path / "sound.wav"
    write_wav(path, audio, RATE)

    info = probe(path)
    assert (info.audio_codec, info.sample_rate, info.audio_channels) == ("pcm_s16le", RATE, 1)
    assert (read_audio(path, RATE) - audio).abs().max() <= 1.01 / 32768


def decode_png(path) -> np.ndarray:
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "png"
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_a_contact_sheet_shows_every_frame_in_a_grid(tmp_path):
    video, _ = clip()
    path = tmp_path / "sheet.png"
    contact_sheet_png(path, video[:10], columns=4)

    sheet = decode_png(path)
    assert sheet.shape == (3 * 64 + 2 * 2, 4 * 64 + 3 * 2, 3)  # 3 rows of 4 cells, 2-pixel gaps
    ninth = sheet[2 * 66 : 2 * 66 + 64, 0:64]  # row 3, column 1
    assert np.abs(ninth.astype(int) - pattern_frame(8, (64, 64))).max() <= 1
    assert (sheet[2 * 66 :, 2 * 66 :] == 32).all()  # the two empty cells stay background


def test_a_spectrogram_shows_a_tone_as_a_bright_line_at_its_pitch(tmp_path):
    t = torch.arange(RATE) / RATE
    tone = 0.5 * torch.sin(2 * torch.pi * 1000 * t)[None]  # (1, L): 1 s at 1 kHz
    path = tmp_path / "spectrum.png"
    spectrogram_png(path, tone, RATE)

    image = decode_png(path)
    assert image.shape[0] == 257  # 512-sample windows: 257 frequency rows, 0 Hz at the bottom
    brightest_row = int(image.astype(float).sum(axis=(1, 2)).argmax())
    assert brightest_row == 256 - round(1000 / (RATE / 2) * 256)
