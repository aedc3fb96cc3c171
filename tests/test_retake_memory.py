"""A sound retake of a long clip holds its sound about twice, not eight times: retaking one second of an hour's
48 kHz WebM took 5.6 GB (one float32 copy of that sound is 691 MB).

The retake runs in its own Python process, which retakes a short clip first (so the model, codecs and meters are
set up before measuring) and then reports how far its peak RSS rose while retaking the long clip. Big blocks are
mapped and unmapped as they are allocated and freed (MALLOC_MMAP_THRESHOLD_), so the peak counts what is alive,
not what the C library keeps for later.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from media_factory import write_test_video
from mmgen_cli import mmgen_env

RATE = 48_000  # the delivered rate (--sample-rate's default), and the input's
SECONDS = 40
MEASURE = """
import resource, sys
from mmgen.pipelines.retake import retake
from mmgen.pipelines.settings import RetakeSettings
warm_up, path, folder = sys.argv[1:4]
retake(warm_up, folder + "/warm_up_retake.webm", RetakeSettings(ranges=("0.5:0.8",), steps=1))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
retake(path, folder + "/long_retake.webm", RetakeSettings(ranges=("10:11",), steps=1))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)  # ru_maxrss: KiB on Linux
"""
COPIES = 3  # the sound as delivered, its lossy encode's trial decoded, and what goes with its length (its window
# sampling's mono copies at the model's rate, the picture's frames at the model's size); measured here 3.7 sounds'
# worth in all, set-up included (main's: 6.9)
SET_UP = 12 << 20  # bytes the long retake may add whatever its length (meters' chunks, encoders, the model's steps)


@pytest.mark.slow  # ~9 s: 40 s of 48 kHz sound, so its copies stand out from the set-up's bytes
def test_retaking_a_second_of_a_long_webm_holds_its_sound_about_twice(tmp_path):
    clip = {"size": (16, 16), "codec": "libvpx", "sample_rate": RATE, "audio_codec": "libopus"}
    warm_up = write_test_video(tmp_path / "warm_up.webm", seconds=1.5, **clip).path
    long = write_test_video(tmp_path / "long.webm", seconds=SECONDS, **clip).path

    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(warm_up), str(long), str(tmp_path)],
        env=mmgen_env(tmp_path, MALLOC_MMAP_THRESHOLD_="131072"), capture_output=True, text=True, timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    grown, sound = int(done.stdout.split()[-1]), SECONDS * RATE * 4  # bytes; one float32 copy of the sound
    assert grown <= COPIES * sound + SET_UP, f"{grown / sound:.1f} copies of the sound"
