"""A user's stream kept under a new one (soundtrack, animate, retake) that the output's container cannot copy is
re-encoded as it is — a picture at its own size, sound of any channel count — or refused, in one line, before any
sampling; an encoder's failure while writing names the output, never the input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from cli_here import run_here
from media_factory import decode_audio, write_test_audio, write_test_video, write_wide_clip
from mmgen_cli import mmgen_env

from mmgen.errors import MediaError
from mmgen.media.tracks import add_video, encoded, open_output
from mmgen.pipelines import soundtrack
from mmgen.pipelines.settings import SoundtrackSettings


def picture(path: Path) -> tuple[int, int, str]:
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height, context.pix_fmt


@pytest.mark.parametrize("size", [(9, 15), (40, 1)])  # (height, width): odd sides; one pixel wide
def test_a_png_picture_re_encoded_for_a_mov_keeps_its_own_size(tiny, tmp_path, size):
    """A 15×9 PNG came out 14×8, silently; a 1×40 one sampled every window and then failed as 'cannot read IN'."""
    clip = write_test_video(tmp_path / "still.mov", seconds=0.5, size=size, codec="png", audio=False).path
    out = tmp_path / "out.mov"
    done = run_here("soundtrack", clip, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert picture(out) == (size[1], size[0], "yuv444p")
    assert f"as yuv444p to keep its odd {size[1]}×{size[0]} size" in done.stderr


def write_alpha_clip(path: Path, codec: str = "png", pix_fmt: str = "rgba", frames: int = 5,
                     opaque: bool = False) -> Path:
    """A 16×16 picture at 10 fps whose frame k is red at opacity 40·k (an overlay fading in), in `codec`;
    `opaque`: every pixel opaque, in the same pixel format."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt, stream.codec_context.time_base = pix_fmt, Fraction(1, 10)
        for k in range(frames):
            pixels = np.zeros((16, 16, 4), np.uint8)
            pixels[..., 0], pixels[..., 3] = 200, 255 if opaque else 40 * k
            frame = av.VideoFrame.from_ndarray(pixels, format="rgba")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def opacities(path: Path) -> list[float]:
    """Each frame's mean alpha (0..255), decoded as players decode it (VP9's alpha: by libvpx, not FFmpeg's own)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        vp9 = stream.codec_context.name == "vp9"
        decoder = av.CodecContext.create("libvpx-vp9", "r") if vp9 else stream.codec_context
        frames = [frame for packet in container.demux(stream) for frame in decoder.decode(packet)]
        return [float(frame.to_ndarray(format="rgba")[..., 3].mean()) for frame in frames]


@pytest.mark.parametrize(("suffix", "kept"), [(".mov", "prores_ks, yuva444p10le"), (".webm", "libvpx-vp9, yuva420p"),
                                              (".mkv", "prores_ks, yuva444p10le"), (".mp4", None)])
def test_a_picture_with_an_alpha_channel_re_encoded_keeps_it_where_the_container_can(tiny, tmp_path, suffix, kept):
    """A PNG overlay fading in (rgba) under a new soundtrack lost its alpha in every container, silently: it is kept
    in ProRes 4444 (mov, mkv) or VP9 (WebM), frame for frame; an mp4 holds none, and the warning says it is dropped."""
    clip = write_alpha_clip(tmp_path / "overlay.mov")
    out = tmp_path / f"scored{suffix}"
    done = run_here("soundtrack", clip, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    if kept:
        assert f"its alpha channel is kept ({kept})" in done.stderr
        assert opacities(out) == pytest.approx(opacities(clip), abs=1.5)
    else:
        assert "its alpha channel is dropped: mp4 holds none (a .mov or .mkv or .webm output keeps it)" in done.stderr
        assert opacities(out) == [255.0] * 5


def write_gif(path: Path, transparent: bool) -> Path:
    """A 16×16 GIF at 10 fps, 3 frames of orange; `transparent`: its top-left pixel shows through (FFmpeg's GIF
    decoder gives bgra either way)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "pal8"
        palette = np.zeros((256, 4), np.uint8)  # BGRA; entry 0 fully transparent
        palette[1] = (0, 128, 255, 255)
        for k in range(3):
            index = np.ones((16, 16), np.uint8)
            index[0, 0] = 0 if transparent else 1
            frame = av.VideoFrame.from_ndarray((index, palette), format="pal8")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(("source", "suffix", "kept"), [("opaque.gif", ".mov", None), ("opaque.gif", ".mp4", None),
                                                        ("opaque.mov", ".mov", None), ("clear.gif", ".mov", "prores")])
def test_only_a_picture_that_shows_through_is_kept_with_alpha(tiny, tmp_path, source, suffix, kept):
    """A pixel format that can carry alpha is not transparency: an opaque GIF (FFmpeg decodes every GIF as bgra) was
    re-encoded as ProRes 4444 into a mov, and into an mp4 said "its alpha channel is dropped"; an opaque rgba PNG in a
    mov went to ProRes too. They are H.264, with no word of alpha; a GIF with a transparent pixel keeps it."""
    clip = tmp_path / source
    if source.endswith(".gif"):
        write_gif(clip, transparent=source == "clear.gif")
    else:
        write_alpha_clip(clip, opaque=True)
    out = tmp_path / f"scored{suffix}"
    done = run_here("soundtrack", clip, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        encoder = container.streams.video[0].codec_context.name
    if kept:
        assert encoder == kept and "its alpha channel is kept (prores_ks" in done.stderr
        assert max(opacities(out)) < 255  # the pixel that shows through, in each frame's mean
    else:
        assert encoder == "h264" and "alpha" not in done.stderr


def test_a_copied_vp9_picture_keeps_its_alpha_flag(tiny, tmp_path):
    """A WebM's VP9 picture with alpha, copied packet for packet into a new WebM: the alpha travels in the packets, but
    the track's AlphaMode flag, which tells players it is there, was left behind (shown opaque)."""
    clip = write_alpha_clip(tmp_path / "overlay.webm", "libvpx-vp9", "yuva420p")
    out = tmp_path / "scored.webm"
    done = run_here("soundtrack", clip, "-o", out, "-m", tiny, "--steps", "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        assert {k.lower(): v for k, v in container.streams.video[0].metadata.items()}.get("alpha_mode") == "1"
    assert opacities(out) == opacities(clip)


def test_a_picture_the_encoder_cannot_take_is_refused_before_any_sampling(tiny, tmp_path):
    clip = write_test_video(tmp_path / "strip.mov", seconds=0.3, size=(2, 20000), codec="png", audio=False).path
    reported = []
    with pytest.raises(MediaError, match=f"cannot write {tmp_path / 'o.mp4'}: {clip}'s png picture must be "
                                         "re-encoded for mp4, and libx264 cannot encode its 20000×2 size"):
        soundtrack(clip, tmp_path / "o.mp4", SoundtrackSettings(model=str(tiny), steps=1, device="cpu"),
                   progress=reported.append)
    assert reported == []


def test_an_encoders_failure_while_writing_names_the_output(tmp_path):
    """An encoder's error carries its function's name as 'filename'; it was taken for the source's."""
    out = tmp_path / "o.mp4"
    frame = av.VideoFrame(2, 2, "yuv420p")
    frame.pts = 0
    with pytest.raises(MediaError, match=f"cannot write {out}"), open_output(out, out) as container:
        stream = add_video(container, "libx264", Fraction(10), 0, 0, 18)
        list(encoded(stream, iter([frame])))


def test_kept_sound_of_channels_in_no_layout_is_mixed_to_mono_for_an_mp4(tiny, tmp_path):
    """9 channels with no layout (2nd-order ambisonics in a hand-written file): FFmpeg's mix to stereo failed with
    `cannot write OUT.mp4: Invalid argument` after all the sampling. They are mixed to mono, their mean."""
    clip = write_wide_clip(tmp_path / "ambi.mkv", 9)
    out = tmp_path / "out.mp4"
    done = run_here("retake", clip, "--video", "--range", "0.2:0.4", "-o", out, "-m", tiny, "--steps", "1",
                    env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    sound, rate = decode_audio(out)
    assert sound.shape[0] == 1 and abs(np.abs(sound).max() - 0.3) < 0.03  # the tone each channel holds
    assert "its 9 channels, in no layout FFmpeg mixes to stereo, are mixed to mono (their mean)" in done.stderr


def test_a_retake_refuses_sound_of_too_many_channels_before_it_looks_for_the_model(tmp_path):
    """65 channels were refused only as the sound was read, after the model had been loaded (a model that is not
    there was reported first)."""
    wide = write_wide_clip(tmp_path / "wide.mkv", 65)
    done = run_here("retake", wide, "--range", "0.2:0.6", "-m", tmp_path / "absent.safetensors", "-o",
                    tmp_path / "o.mp4", env=mmgen_env(tmp_path))
    assert (done.returncode, done.stderr) == (2, f"mmgen: error: cannot read {wide}: its audio has 65 channels, "
                                                 "more than the 64 FFmpeg's resampler mixes to mono\n")


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_a_pcm_sound_retaken_into_a_container_that_holds_pcm_stays_pcm_sample_exact_outside_the_range(
    tiny, tmp_path, suffix
):
    """It came back as AAC: a full-scale tone differed by up to 0.997 outside the range."""
    clip = write_test_video(tmp_path / "pcm.mkv", seconds=0.6, size=(16, 16), audio_codec="pcm_s16le",
                            sample_rate=48000).path
    out = tmp_path / f"out{suffix}"
    done = run_here("retake", clip, "--range", "0.3:0.4", "-o", out, "--loudness", "off", "-m", tiny, "--steps",
                    "1", env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "pcm_s16le"
    (before, _), (after, _) = decode_audio(clip), decode_audio(out)
    outside = np.r_[0:12000, 21600:28800]  # 50 ms clear of the range's seams on each side
    assert after.shape == before.shape and np.array_equal(after[:, outside], before[:, outside])


def sound_samples(path: Path) -> tuple[str, np.ndarray]:
    """The codec of `path`'s sound and its samples as they decode (s32 for 24-bit PCM: every bit)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.name, np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
@pytest.mark.parametrize("kept_by", ["animate", "retake"])
def test_a_24_bit_pcm_sound_kept_in_a_mkv_or_mov_is_copied(tiny, tmp_path, suffix, kept_by):
    """Both containers hold 24-bit PCM (pcm_s24le) as it is: a WAV's sound kept under a new picture (animate; a
    picture's retake) was encoded to AAC, the only PCM they were said to take being 16-bit."""
    if kept_by == "animate":
        source = write_test_audio(tmp_path / "take.wav", seconds=1.6, codec="pcm_s24le").path
        args = ["animate", source]
    else:
        source = write_test_video(tmp_path / "take.mkv", seconds=1.6, size=(16, 16), sample_rate=16000,
                                  audio_codec="pcm_s24le").path
        args = ["retake", source, "--video", "--range", "0.5:0.9"]
    out = tmp_path / f"out{suffix}"
    done = run_here(*args, "-m", tiny, "--steps", "1", "-o", out, env=mmgen_env(tmp_path))
    assert done.returncode == 0, done.stderr
    (codec, before), (kept, after) = sound_samples(source), sound_samples(out)
    assert (codec, kept) == ("pcm_s24le", "pcm_s24le")
    assert np.array_equal(after, before)
