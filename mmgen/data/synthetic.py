"""The "flash-and-tone" world (v1): synthetic clips with a measurable audio-visual link, for the demo model.

Each clip shows one still disc of one of four colours on a dark grey background. The disc is dim, except on
1 to 3 event frames (never two adjacent) where it flashes bigger and in full colour. The soundtrack is silent
except for a short sine burst starting at each event frame, its pitch set by the disc's colour. A model that
learned the link must put bursts on the flash frames (timing) at the colour's pitch (content); see
`mmgen.data.world_metrics` for the measurements.

Pixel geometry: pixel (i, j) covers [i, i+1) x [j, j+1) in continuous (y, x) coordinates, so a frame spans
[0, size] on both axes and `centre` is given in those units.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from mmgen.config import to_dict
from mmgen.errors import ConfigError, MmgenError, OutputExists
from mmgen.files import atomic_output

BACKGROUND = 0.1  # grey level of the whole frame, on a 0..1 scale
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.15, 0.15),
    "green": (0.15, 1.0, 0.15),
    "blue": (0.25, 0.35, 1.0),
    "yellow": (1.0, 1.0, 0.1),
}
PITCH_HZ: dict[str, float] = {"red": 300.0, "green": 500.0, "blue": 800.0, "yellow": 1300.0}

# "Dim = colour blended 45% from the background" read as: 0.55 * colour + 0.45 * background.
DIM_COLOUR_WEIGHT = 0.55
DIM_RADIUS = 0.16  # disc radius as a fraction of the frame height, normal frames
FLASH_RADIUS = 0.22  # ... and on event frames

BURST_SECONDS = 0.080
BURST_ATTACK_SECONDS = 0.002  # linear rise from 0 to the peak
BURST_DECAY_SECONDS = 0.025  # time constant tau of the exponential decay after the attack
BURST_PEAK = 0.7

_SUPERSAMPLE = 4  # sub-pixel samples per axis for the disc's anti-aliased edge


@dataclass(frozen=True)
class WorldConfig:
    """The sizes of a world's clips and which pitch each colour sounds at (PITCH_HZ unless changed, e.g. two
    colours swapped to teach a model a new mapping); the rest of the physics is the constants above."""

    frames: int = 16
    size: int = 32  # frame height = width, in pixels; even, because H.264 needs even sizes
    sample_rate: int = 16000
    fps: float = 10.0
    min_events: int = 1
    max_events: int = 3
    pitch_hz: dict[str, float] = field(default_factory=lambda: dict(PITCH_HZ))

    def __post_init__(self) -> None:
        if set(self.pitch_hz) != set(COLOURS) or not all(p > 0 for p in self.pitch_hz.values()):
            raise ConfigError(f"world: pitch_hz must give a positive pitch for each of {', '.join(COLOURS)}")
        if self.size < 8 or self.size % 2:
            raise ConfigError(f"world: size must be an even number >= 8, got {self.size}")
        if self.sample_rate < 2 * max(self.pitch_hz.values()) * 1.5:
            raise ConfigError(f"world: sample_rate {self.sample_rate} is too low for the highest pitch")
        if self.fps <= 0:
            raise ConfigError(f"world: fps must be positive, got {self.fps}")
        if not 1 <= self.min_events <= self.max_events:
            raise ConfigError(
                f"world: need 1 <= min_events <= max_events, got {self.min_events}..{self.max_events}"
            )
        if self.frames < 2 * self.max_events - 1:
            raise ConfigError(
                f"world: {self.frames} frames cannot hold {self.max_events} non-adjacent events"
            )

    def swap_pitches(self, a: str, b: str) -> WorldConfig:
        """The same world with colours `a` and `b` sounding at each other's pitch."""
        pitches = dict(self.pitch_hz)
        if a not in pitches or b not in pitches or a == b:
            raise ConfigError(f"world: cannot swap {a!r} and {b!r} (colours: {', '.join(COLOURS)})")
        pitches[a], pitches[b] = pitches[b], pitches[a]
        return replace(self, pitch_hz=pitches)

    @property
    def samples(self) -> int:
        """Audio length L: the clip's duration (frames / fps) at the sample rate."""
        return round(self.frames * self.sample_rate / self.fps)


def frame_start_sample(frame: int | float, sample_rate: int, fps: float) -> int:
    """The audio sample where video frame `frame` begins (frame k is shown from k / fps seconds)."""
    return round(frame * sample_rate / fps)


@dataclass(frozen=True)
class Clip:
    """One rendered clip and the truth behind it."""

    video: torch.Tensor  # (F, 3, H, W) in [-1, 1]
    audio: torch.Tensor  # (1, L) in [-1, 1]
    colour: str
    centre: tuple[float, float]  # (y, x) in pixels, see the module docstring
    event_frames: list[int]
    pitch_hz: float  # the colour's pitch in this clip's world


@dataclass(frozen=True)
class Label:
    """One line of a dataset's labels.jsonl: the truth behind `file`."""

    file: str
    colour: str
    centre: tuple[float, float]
    event_frames: list[int]
    pitch_hz: float


def render_clip(config: WorldConfig, generator: torch.Generator) -> Clip:
    """Draw one clip's colour, events and position from `generator`, then render it. Deterministic."""
    names = list(COLOURS)
    colour = names[int(torch.randint(len(names), (1,), generator=generator))]
    events = _draw_events(config, generator)
    flash_radius = FLASH_RADIUS * config.size
    # Fully inside the frame even when flashing: the centre keeps the flash radius from every edge.
    y, x = (
        flash_radius
        + torch.rand(2, generator=generator, dtype=torch.float64) * (config.size - 2 * flash_radius)
    ).tolist()
    return Clip(
        video=_render_video(config, colour, (y, x), events),
        audio=_render_audio(config, config.pitch_hz[colour], events),
        colour=colour,
        centre=(y, x),
        event_frames=events,
        pitch_hz=config.pitch_hz[colour],
    )


def render_batch(config: WorldConfig, n: int, seed: int) -> list[Clip]:
    """`n` clips from one seeded generator; the first k clips do not depend on `n`."""
    generator = torch.Generator().manual_seed(seed)
    return [render_clip(config, generator) for _ in range(n)]


def _draw_events(config: WorldConfig, generator: torch.Generator) -> list[int]:
    """k event frames, uniform over all sets of k pairwise non-adjacent frames.

    Choosing k non-adjacent frames out of F is choosing k of F - k + 1 slots and spreading them apart by
    adding 0, 1, ..., k-1 to the sorted choice, so no rejection loop is needed.
    """
    k = int(torch.randint(config.min_events, config.max_events + 1, (1,), generator=generator))
    slots = torch.randperm(config.frames - k + 1, generator=generator)[:k].sort().values
    return (slots + torch.arange(k)).tolist()


def _disc_coverage(size: int, centre: tuple[float, float], radius: float) -> torch.Tensor:
    """The share of each pixel inside the disc, from _SUPERSAMPLE^2 sub-pixel samples: (H, W) in [0, 1]."""
    s = _SUPERSAMPLE
    sub = (torch.arange(size * s, dtype=torch.float64) + 0.5) / s  # sub-pixel centres along one axis
    dy, dx = sub[:, None] - centre[0], sub[None, :] - centre[1]
    inside = (dy**2 + dx**2 <= radius**2).to(torch.float64)  # (H*s, W*s)
    return inside.reshape(size, s, size, s).mean(dim=(1, 3))  # (H, W)


def _render_video(
    config: WorldConfig, colour: str, centre: tuple[float, float], events: list[int]
) -> torch.Tensor:
    full = torch.tensor(COLOURS[colour], dtype=torch.float64)
    dim = DIM_COLOUR_WEIGHT * full + (1 - DIM_COLOUR_WEIGHT) * BACKGROUND
    looks = {  # per state: (disc RGB (3,), coverage (H, W))
        False: (dim, _disc_coverage(config.size, centre, DIM_RADIUS * config.size)),
        True: (full, _disc_coverage(config.size, centre, FLASH_RADIUS * config.size)),
    }
    frames = []
    for f in range(config.frames):
        rgb, coverage = looks[f in events]
        frames.append(BACKGROUND + coverage[None] * (rgb[:, None, None] - BACKGROUND))  # (3, H, W)
    video = torch.stack(frames)  # (F, 3, H, W) in [0, 1]
    return (video * 2 - 1).to(torch.float32)


def burst(pitch_hz: float, sample_rate: int) -> torch.Tensor:
    """One event's sound: a sine at `pitch_hz`, 2 ms linear attack to 0.7, then exp decay (tau 25 ms); (n,)."""
    t = torch.arange(round(BURST_SECONDS * sample_rate), dtype=torch.float64) / sample_rate
    attack = (t / BURST_ATTACK_SECONDS).clamp(max=1.0)
    decay = torch.exp(-(t - BURST_ATTACK_SECONDS).clamp(min=0.0) / BURST_DECAY_SECONDS)
    return BURST_PEAK * attack * decay * torch.sin(2 * math.pi * pitch_hz * t)


def _render_audio(config: WorldConfig, pitch_hz: float, events: list[int]) -> torch.Tensor:
    audio = torch.zeros(config.samples, dtype=torch.float64)
    sound = burst(pitch_hz, config.sample_rate)
    for f in events:
        start = frame_start_sample(f, config.sample_rate, config.fps)
        n = min(len(sound), config.samples - start)  # a burst near the end is cut at the clip's end
        audio[start : start + n] = sound[:n]
    return audio[None].to(torch.float32)  # (1, L)


def write_dataset(
    out_dir: str | Path,
    config: WorldConfig,
    n: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write `n` clips as ordinary mp4s (H.264 + AAC), clip_00000.mp4 ..., plus labels.jsonl and world.json.

    The folder is what `mmgen finetune` reads, the same path a user's own clips take. labels.jsonl is written
    last, so a folder with it is complete. `progress(done, total)` is called after each clip.
    Returns the path of labels.jsonl.
    """
    from mmgen.media import write_mp4  # here, so rendering clips does not load PyAV

    out_dir = Path(out_dir)
    labels_path = out_dir / "labels.jsonl"
    if labels_path.exists() and not overwrite:
        raise OutputExists(
            f"{out_dir}: already holds a dataset (labels.jsonl)",
            hint="choose another folder, or overwrite it",
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    lines = []
    generator = torch.Generator().manual_seed(seed)
    for i in range(n):
        clip = render_clip(config, generator)
        name = f"clip_{i:05d}.mp4"
        write_mp4(out_dir / name, clip.video, clip.audio, config.fps, config.sample_rate, overwrite=True)
        label = Label(name, clip.colour, clip.centre, clip.event_frames, clip.pitch_hz)
        lines.append(json.dumps(asdict(label)))
        if progress is not None:
            progress(i + 1, n)

    with atomic_output(out_dir / "world.json", overwrite=True) as tmp:
        tmp.write_text(
            json.dumps({"world": "flash-and-tone/1", "seed": seed, **to_dict(config)}, indent=2) + "\n"
        )
    with atomic_output(labels_path, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return labels_path


def read_labels(data_dir: str | Path) -> list[Label]:
    """The labels of a folder written by `write_dataset`, in file order."""
    labels = []
    for line in (Path(data_dir) / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        labels.append(
            Label(row["file"], row["colour"], tuple(row["centre"]), row["event_frames"], row["pitch_hz"])
        )
    return labels


def _main(argv: list[str] | None = None) -> None:
    """Dev entry point until the `mmgen` CLI grows a command for it."""
    from mmgen.cli.progress import progress_display
    from mmgen.pipelines.events import ProgressEvent
    from mmgen.terminal import counted

    p = argparse.ArgumentParser(prog="python -m mmgen.data.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path, help="folder to write the clips, labels.jsonl and world.json into")
    p.add_argument("-n", "--num", dest="n", type=int, default=500, help="how many clips to write (default: %(default)s)")
    p.add_argument("--n", dest="n", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # its first spelling
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same clips "
                   "(default: %(default)s)")
    p.add_argument("--frames", type=int, default=WorldConfig.frames,
                   help="frames per clip, at 10 fps (default: %(default)s)")
    p.add_argument("--size", type=int, default=WorldConfig.size,
                   help="frame height and width in pixels, even, 8 or more (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=WorldConfig.sample_rate,
                   help="audio sample rate in Hz (default: %(default)s)")
    p.add_argument("--swap-pitches", metavar="A,B", help="two colours that sound at each other's pitch")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that already holds a dataset")
    a = p.parse_args(argv)
    try:
        config = WorldConfig(frames=a.frames, size=a.size, sample_rate=a.sample_rate)
        if a.swap_pitches:
            config = config.swap_pitches(*a.swap_pitches.split(",", 1))
        # on stderr as every command's: a bar on a terminal, a few plain lines in a log or a pipe (no \r)
        with progress_display() as progress:
            path = write_dataset(a.out_dir, config, a.n, a.seed,
                                 lambda done, total: progress(ProgressEvent("clips", done, total)), overwrite=a.overwrite)
    except MmgenError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {counted(a.n, 'clip')} and {path}")


if __name__ == "__main__":
    _main()
