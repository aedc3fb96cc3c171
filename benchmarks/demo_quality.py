"""How well a model trained on the flash-and-tone world keeps sound and picture together, and at what cost.

Usable on any mm-unet trained on the world (`--model demo`, a registry name, or a .safetensors path):

* video-to-audio through the real `soundtrack` pipeline — the same call as `mmgen soundtrack CLIP.mp4`, AAC
  encoding and remuxing included — on held-out clips: event F1 of the bursts against the true flash frames and
  pitch accuracy, next to chance (the same audio scored against mismatched clips);
* unconditional generation through the `generate` pipeline: well-formed share, flash/burst F1 and
  colour/pitch agreement, next to chance (each video paired with another clip's audio);
* cost: model calls (counted, not assumed) and wall time per clip for every sampler setting measured, and
  the paper's conditional setting (DDPM 1000 steps + gradient guidance) on a small subset.

Held-out clips come from `--data DIR` (a folder written by `python -m mmgen.data.synthetic`) or are written
afresh with `--world-seed`, which must differ from the training set's seed. Prints Markdown tables; `--json`
also writes every number.

    python benchmarks/demo_quality.py --model demo --clips 64 --samples 64 --paper-subset 2 --json m.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from mmgen.data.synthetic import WorldConfig, read_labels, write_dataset
from mmgen.data.world_metrics import score_unconditional, score_video_to_audio
from mmgen.media import read_audio
from mmgen.models.mmunet import MMUNet
from mmgen.pipelines.generate import iter_generate
from mmgen.pipelines.session import keep_loaded, load, prepare
from mmgen.pipelines.settings import GenerateSettings, SoundtrackSettings
from mmgen.pipelines.soundtrack import soundtrack

TARGETS = {  # issue 7
    "video_to_audio": {"f1": 0.85, "pitch_accuracy": 0.9},
    "unconditional": {"well_formed": 0.8, "flash_burst_f1": 0.7, "colour_pitch": 0.8},
}


@dataclass(frozen=True)
class Setting:
    """A way to sample: `default` (what the commands do without flags), SAMPLER:STEPS[:GUIDANCE] (guidance:
    replacement or gradient, for video-to-audio), or the `paper` preset (conditional: DDPM 1000 + gradient
    guidance; unconditional: the paper's DPM-Solver, 20 calls)."""

    label: str
    preset: str | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance: str | None = None

    @classmethod
    def parse(cls, text: str) -> Setting:
        if text in ("default", "paper"):
            return cls(text, preset=None if text == "default" else "paper")
        parts = text.split(":")
        sampler, steps = parts[0], parts[1] if len(parts) > 1 else ""
        guidance = parts[2] if len(parts) == 3 else None
        if len(parts) > 3 or not steps.isdigit() or guidance not in (None, "replacement", "gradient"):
            raise SystemExit(
                f"error: setting {text!r}: expected default, paper or SAMPLER:STEPS[:replacement|gradient]"
            )
        return cls(text, sampler=sampler, steps=int(steps), guidance=guidance)

    def options(self, conditional: bool = False) -> dict:
        """The settings fields this fixes; guidance only where an input steers (soundtrack)."""
        chosen = {"preset": self.preset, "sampler": self.sampler, "steps": self.steps}
        return {**chosen, "guidance": self.guidance} if conditional else chosen


class CallCounter:
    """Counts forward calls of every MM-UNet, through a global module hook: the cost as it happened."""

    def __init__(self):
        self.calls = 0

    def __call__(self, module: torch.nn.Module, args) -> None:
        if isinstance(module, MMUNet):
            self.calls += 1

    @contextmanager
    def counting(self) -> Iterator[CallCounter]:
        self.calls = 0
        handle = torch.nn.modules.module.register_module_forward_pre_hook(self)
        try:
            yield self
        finally:
            handle.remove()


def held_out_clips(model: str, data: Path | None, count: int, world_seed: int, workdir: Path) -> Path:
    """A folder of held-out clips at the model's frames, size and rates: `data`, or `count` new ones."""
    if data is not None:
        return data
    run = prepare(SoundtrackSettings(model=model))
    config = load(run).base.config
    frames, _, size, _ = config.video_size
    world = WorldConfig(frames=frames, size=size, sample_rate=config.sample_rate, fps=config.fps)
    folder = workdir / "held-out"
    write_dataset(folder, world, count, world_seed)
    return folder


def video_to_audio(model: str, folder: Path, count: int, setting: Setting, seed: int, workdir: Path) -> dict:
    """Soundtracks for the first `count` clips of `folder` written by the soundtrack pipeline, decoded back,
    and scored against the clips' labels."""
    labels = read_labels(folder)[:count]
    run = prepare(SoundtrackSettings(model=model, **setting.options(conditional=True)))
    config = load(run).base.config
    audio, counter, started = [], CallCounter(), time.perf_counter()
    with counter.counting():
        for i, label in enumerate(labels):
            out = workdir / f"{setting.label.replace(':', '-')}_{i:05d}.mp4"
            # the model's own sound (its rate and level) is what is scored, not a delivered one
            settings = SoundtrackSettings(model=model, seed=seed + i, loudness="off", sample_rate="model",
                                          **setting.options(conditional=True))
            result = soundtrack(folder / label.file, out, settings, overwrite=True)
            audio.append(read_audio(result.files["mp4"], config.sample_rate))  # (1, L): what a user's file holds
            out.unlink()
    seconds = time.perf_counter() - started
    length = min(a.shape[-1] for a in audio)
    scores = score_video_to_audio(
        [a[:, :length] for a in audio], labels, sample_rate=config.sample_rate, fps=config.fps
    )
    return {**scores, **_cost(run, counter.calls, len(labels), seconds)}


def unconditional(model: str, count: int, setting: Setting, seed: int, batch_size: int) -> dict:
    """`count` clips from the generate pipeline (seeds seed … seed + count − 1), scored on their own."""
    run = prepare(GenerateSettings(model=model, seed=seed, upscale=False, **setting.options()))
    models = load(run)
    counter, started = CallCounter(), time.perf_counter()
    with counter.counting():
        results = list(iter_generate(run, models, count, batch_size))
    seconds = time.perf_counter() - started
    config = models.base.config
    scores = score_unconditional(
        [r.clip.video for r in results], [r.clip.audio for r in results],
        sample_rate=config.sample_rate, fps=config.fps,
    )
    batches = -(-count // batch_size)
    return {**scores, **_cost(run, counter.calls / batches * count, count, seconds)}


def _cost(run, calls: float, clips: int, seconds: float) -> dict:
    sampling = run.sampling
    per_clip = calls / clips
    return {
        "sampler": sampling.sampler,
        "steps": sampling.steps,
        "guidance": sampling.guidance,
        "model_calls_per_clip": int(per_clip) if float(per_clip).is_integer() else round(per_clip, 2),
        "seconds_per_clip": round(seconds / clips, 3),
    }


def _table(title: str, rows: dict[str, dict], columns: list[str]) -> str:
    lines = [f"### {title}", "", "| setting | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, row in rows.items():
        cells = [_cell(row.get(c)) for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo", help="registry name or .safetensors path (default: demo)")
    p.add_argument("--data", type=Path, help="held-out clips (a synthetic-world folder); default: write new ones")
    p.add_argument("--world-seed", type=int, default=2, help="seed of new held-out clips (training used 1)")
    p.add_argument("--clips", type=int, default=64, help="held-out clips for video-to-audio")
    p.add_argument("--samples", type=int, default=64, help="clips generated unconditionally")
    p.add_argument("--settings", default="default", help="comma-separated: default, paper, SAMPLER:STEPS")
    p.add_argument("--paper-subset", type=int, default=0, help="clips scored with the paper's v2a setting")
    p.add_argument("--paper-steps", type=int, default=1000, help="DDPM steps of that setting (paper: 1000)")
    p.add_argument("--batch-size", type=int, default=16, help="unconditional clips per sampler call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write all numbers here")
    a = p.parse_args(argv)
    settings = [Setting.parse(s.strip()) for s in a.settings.split(",") if s.strip()]

    torch.manual_seed(a.seed)
    report: dict = {"model": a.model, "targets": TARGETS, "video_to_audio": {}, "unconditional": {}}
    with tempfile.TemporaryDirectory(prefix="mmgen-demo-quality-") as tmp, keep_loaded():
        workdir = Path(tmp)
        folder = held_out_clips(a.model, a.data, max(a.clips, a.paper_subset), a.world_seed, workdir)
        report["held_out"] = str(a.data) if a.data else f"written with world seed {a.world_seed}"
        for s in settings:
            if a.clips:
                report["video_to_audio"][s.label] = video_to_audio(a.model, folder, a.clips, s, a.seed, workdir)
            if a.samples:
                report["unconditional"][s.label] = unconditional(a.model, a.samples, s, a.seed, a.batch_size)
        if a.paper_subset:
            paper = Setting("paper (subset)", preset="paper", steps=a.paper_steps)
            report["video_to_audio"][paper.label] = video_to_audio(
                a.model, folder, a.paper_subset, paper, a.seed, workdir
            )

    v2a_cols = ["n", "f1", "chance_f1", "pitch_accuracy", "chance_pitch_accuracy", "sampler", "steps",
                "guidance", "model_calls_per_clip", "seconds_per_clip"]
    uncond_cols = ["n", "well_formed", "flash_burst_f1", "chance_flash_burst_f1", "colour_pitch",
                   "chance_colour_pitch", "sampler", "steps", "model_calls_per_clip", "seconds_per_clip"]
    print(f"## demo_quality: {a.model}\n")
    print(_table("Video-to-audio (soundtrack pipeline, held-out clips)", report["video_to_audio"], v2a_cols))
    print(_table("Unconditional (generate pipeline)", report["unconditional"], uncond_cols))
    print("Targets: " + json.dumps(TARGETS))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
