"""A creator's folder of clips for the finetune tests, written with PyAV (through mmgen.media.write_mp4).

Each good clip shows one solid colour at a time with a tone whose pitch follows the colour, so the video says
what the audio should be: exactly the link fine-tuning must learn. A clip may change colour (and pitch) every
`segment` seconds, which lets a test check that cut clips keep video and audio aligned. The folder also holds
the files a real folder has: a corrupt .mp4, a silent video-only .mp4, and things that are not videos.
Also here: the tiny network the training tests fit (TRAIN_MODEL) and the recipe files that name it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from mmgen.data.clips import ClipFormat

COLOURS = {
    "red": (1.0, 0.15, 0.15),
    "green": (0.15, 1.0, 0.15),
    "blue": (0.25, 0.35, 1.0),
    "yellow": (1.0, 1.0, 0.1),
}
PITCH_HZ = {"red": 300.0, "green": 500.0, "blue": 800.0, "yellow": 1300.0}
FPS = 10.0
SAMPLE_RATE = 16000

# The tiny training format of these tests: 4 frames of 16×16 at 10 fps = 0.4 s = 3,200 samples at 8 kHz.
TINY_FORMAT = ClipFormat(frames=4, fps=10.0, height=16, width=16, sample_rate=8000, samples=3200)

# The network the training tests fit in seconds on one CPU thread (0.97 M parameters): 2 frames of 8×8 at 10 fps
# and the same 0.2 s of audio at 8 kHz (1,600 samples), a rate AAC can store, so previews and `generate` work.
TRAIN_MODEL = {
    "arch": "mm-unet",
    "config": {
        "video_size": [2, 3, 8, 8],
        "audio_size": [1, 1600],
        "fps": 10.0,
        "sample_rate": 8000,
        "model_channels": 32,
        "channel_mult": [1, 2],
        "num_res_blocks": 1,
        "cross_attention_resolutions": [2],
        "cross_attention_windows": [1],
        "video_attention_resolutions": [2],
        "audio_attention_resolutions": [-1],
        "num_heads": 2,
        "num_head_channels": 16,
    },
}


def write_recipe(path: Path, model: dict | None = None, **settings) -> Path:
    """A --config file for `mmgen finetune --scratch`: the architecture plus any settings."""
    path.write_text(yaml.safe_dump({"model": model or TRAIN_MODEL, **settings}, sort_keys=False))
    return path


def colour_clip(
    colours: list[str], segment: float, size: tuple[int, int] = (24, 32)
) -> dict[str, torch.Tensor]:
    """{"video": (T, 3, H, W), "audio": (1, L)} in [-1, 1]: each colour for `segment` seconds with its tone."""
    frames_per = round(segment * FPS)
    samples_per = round(segment * SAMPLE_RATE)
    video, audio = [], []
    for name in colours:
        rgb = torch.tensor(COLOURS[name]) * 2 - 1
        video.append(rgb.view(1, 3, 1, 1).expand(frames_per, 3, *size))
        t = torch.arange(samples_per, dtype=torch.float64) / SAMPLE_RATE
        audio.append((0.5 * torch.sin(2 * math.pi * PITCH_HZ[name] * t)).float().view(1, -1))
    return {"video": torch.cat(video), "audio": torch.cat(audio, dim=1)}


def write_clip(path: Path, colours: list[str], segment: float = 1.0, audio: bool = True) -> Path:
    from mmgen.media import write_mp4

    clip = colour_clip(colours, segment)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, clip["video"], clip["audio"] if audio else None, FPS, SAMPLE_RATE)
    return path


def write_clip_folder(root: Path, good: int = 4, seconds: float = 2.0) -> dict[str, list[Path]]:
    """`good` single-colour clips (cycling through the colours, some in a subfolder), one corrupt mp4, one
    video-only mp4, and two files that are not videos. Returns the paths by kind."""
    names = list(COLOURS)
    good_paths = [
        write_clip(root / ("nested" if i % 2 else ".") / f"clip_{i}.mp4", [names[i % len(names)]], seconds)
        for i in range(good)
    ]
    corrupt = root / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    silent = write_clip(root / "silent.mov", ["blue"], seconds, audio=False)
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden").mkdir(exist_ok=True)
    write_clip(root / ".hidden" / "ignored.mp4", ["red"], seconds)
    return {"good": good_paths, "corrupt": [corrupt], "silent": [silent]}


def dominant_hz(audio: torch.Tensor, sample_rate: int) -> float:
    """The strongest frequency of (1, L) audio (Hann-windowed FFT peak)."""
    x = audio.reshape(-1).double()
    spectrum = torch.fft.rfft(x * torch.hann_window(len(x), dtype=torch.float64)).abs()
    spectrum[0] = 0
    return float(spectrum.argmax()) * sample_rate / len(x)


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread for in-process training code: bitwise reproducible, and not oversubscribing a busy
    machine (two threads on a shared 2-core box run tiny models ~10× slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
