"""A long input is read in memory that grows only by its frames at the model's size.

Each read runs in its own Python process, which reads a one-second clip first (so codec and filter set-up are
paid before measuring) and then reports how far its peak RSS rose while reading the clip under test. A clip four
times longer may cost only its extra model-size frames: 5 bytes a pixel (the uint8 frame while decoding, then the
float32 tensor returned), however large the source pictures are. A long sound is held about once while it is read.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

from media_factory import write_long_video, write_test_audio
from mmgen_cli import mmgen_env

from mmgen.media import read_audio

FPS = 10
SOURCE = (240, 320)  # (height, width), 7.5× the model frame's pixels
SIZE = (128, 128)
BYTES_PER_PIXEL = 5  # uint8 while decoding + float32 returned
SLACK = 8 << 20  # bytes: allocator rounding, Python objects per frame
SET_UP = 16 << 20  # bytes the first long read may add once (decoder and filter pools at the source's size)
MEASURE = """
import resource, sys
from mmgen.media import read_video
warm_up, path, fps, height, width = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
read_video(warm_up, fps, (height, width))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
video = read_video(path, fps, (height, width))
unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
print(len(video), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * unit)
"""


def peak_growth(warm_up, path, tmp_path) -> tuple[int, int]:
    """(frames read, bytes the peak RSS grew by while reading `path`) in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, warm_up, path, str(FPS), *map(str, SIZE)],
        env=mmgen_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    frames, grown = map(int, done.stdout.split())
    return frames, grown


def test_a_clip_four_times_longer_costs_only_its_extra_frames_at_model_size(tmp_path):
    warm_up = write_long_video(tmp_path / "warm_up.mp4", seconds=1, fps=FPS, size=SOURCE)
    short = write_long_video(tmp_path / "short.mp4", seconds=20, fps=FPS, size=SOURCE)
    long = write_long_video(tmp_path / "long.mp4", seconds=80, fps=FPS, size=SOURCE)
    frame_bytes = BYTES_PER_PIXEL * 3 * SIZE[0] * SIZE[1]

    short_frames, short_growth = peak_growth(warm_up, short, tmp_path)
    long_frames, long_growth = peak_growth(warm_up, long, tmp_path)

    assert (short_frames, long_frames) == (200, 800)
    assert long_growth - short_growth <= (long_frames - short_frames) * frame_bytes + SLACK, (short_growth, long_growth)
    assert long_growth <= long_frames * frame_bytes + SET_UP, long_growth


def test_a_long_sound_is_held_once_while_it_is_read(tmp_path):
    """read_audio writes each decoded frame into one buffer grown in place: what Python and numpy hold at the peak
    (tracemalloc counts numpy's buffers) is the sound about once, not a list of its frames plus their join (3×)."""
    path = write_test_audio(tmp_path / "long.wav", seconds=30, sample_rate=48000, channels=2, codec="pcm_s16le").path
    read_audio(path, 48000)  # codec and resampler set up before measuring
    tracemalloc.start()
    try:
        audio = read_audio(path, 48000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    size = audio.numel() * audio.element_size()
    assert audio.shape == (1, 30 * 48000)
    assert peak <= 1.25 * size + (256 << 10), (peak, size)
