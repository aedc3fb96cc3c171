"""Does a LoRA adapter teach the bundled demo a new rule? A world where two colours swap pitches.

1. Writes training clips of the flash-and-tone world with two colours' pitches swapped (default red ↔ blue)
   and held-out clips of the same changed world.
2. Trains a rank-R adapter on the bundled `demo` with the real `mmgen finetune --lora` (bounded CPU steps).
3. Scores video-to-audio through the real soundtrack pipeline, with and without `--adapter`: pitch accuracy by
   the NEW mapping, separately on the changed colours and on the unchanged ones, plus event F1 and chance.

    python benchmarks/lora_demo_world.py --train-clips 256 --held-out 32 --steps 200 --rank 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmgen.data.synthetic import WorldConfig, read_labels, write_dataset
from mmgen.data.world_metrics import score_video_to_audio
from mmgen.media import read_audio
from mmgen.pipelines.session import keep_loaded
from mmgen.pipelines.settings import SoundtrackSettings
from mmgen.pipelines.soundtrack import soundtrack
from mmgen.weights import load_model


def demo_world(swap: tuple[str, str]) -> WorldConfig:
    """The demo's clip format, with two colours' pitches swapped."""
    config = load_model("demo").config
    frames, _, size, _ = config.video_size
    return WorldConfig(frames=frames, size=size, sample_rate=config.sample_rate, fps=config.fps).swap_pitches(*swap)


def train_adapter(data: Path, run: Path, *, steps: int, rank: int, lr: float, batch_size: int, seed: int = 0,
                  env: dict[str, str] | None = None) -> Path:
    """RUN/adapter.safetensors of `mmgen finetune DATA --from demo --lora RANK` (the demo's stage-2 loss)."""
    command = [
        sys.executable, "-m", "mmgen", "finetune", str(data), "--from", "demo", "--lora", str(rank), "-o", str(run),
        "--steps", str(steps), "--batch-size", str(batch_size), "--lr", str(lr), "--seed", str(seed),
        "--loss-weights", "video=1,audio=2", "--ema-decay", "0.9", "--save-every", "0", "--sample-every", "0",
        "--probe-every", "0", "--config", str(_recipe(run.parent)),
    ]  # fmt: skip
    done = subprocess.run(command, env=env or os.environ.copy(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"finetune failed:\n{done.stderr[-3000:]}")
    return run / "adapter.safetensors"


def _recipe(folder: Path) -> Path:
    """The demo's stage-2 loss weighting (presets/demo-train-stage2.yaml), without its model section."""
    path = folder / "lora-recipe.yaml"
    path.write_text("min_snr_gamma: 5.0\nx0_weight_cap: 50.0\nlog_every: 10\n")
    return path


def score(held_out: Path, world: WorldConfig, adapter: Path | None, workdir: Path, seed: int = 0,
          groups: tuple[str, ...] = ("changed", "unchanged")) -> dict:
    """Video-to-audio scores by the changed world's mapping: on the colours whose pitch moved, on the others.
    `groups` chooses which of the two are scored (clip i has seed + i either way, so a clip's sound is the same)."""
    labels = read_labels(held_out)
    adapters = (str(adapter),) if adapter else ()
    moved = {c for c, p in world.pitch_hz.items() if p != WorldConfig().pitch_hz[c]}
    group_of = ["changed" if label.colour in moved else "unchanged" for label in labels]
    audio = {}
    for i, label in enumerate(labels):
        if group_of[i] not in groups:
            continue
        settings = SoundtrackSettings(seed=seed + i, loudness="off", sample_rate="model", adapter=adapters)
        result = soundtrack(held_out / label.file, workdir / f"v2a_{i:04d}.mp4", settings, overwrite=True)
        audio[i] = read_audio(result.files["mp4"], world.sample_rate)
    length = min(a.shape[-1] for a in audio.values())
    report = {}
    for group in groups:
        chosen = [i for i in audio if group_of[i] == group]
        scores = score_video_to_audio([audio[i][:, :length] for i in chosen], [labels[i] for i in chosen],
                                      sample_rate=world.sample_rate, fps=world.fps, pitch_hz=world.pitch_hz)
        report[group] = {k: round(v, 3) if isinstance(v, float) else v for k, v in scores.items()}
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--swap", default="red,blue", help="two colours whose pitches swap")
    p.add_argument("--train-clips", type=int, default=256)
    p.add_argument("--held-out", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    world = demo_world(tuple(a.swap.split(",", 1)))
    report: dict = {"swap": a.swap, "steps": a.steps, "rank": a.rank, "lr": a.lr, "batch_size": a.batch_size}
    with tempfile.TemporaryDirectory(prefix="mmgen-lora-world-") as tmp, keep_loaded():
        tmp = Path(tmp)
        write_dataset(tmp / "train", world, a.train_clips, seed=11)
        write_dataset(tmp / "held-out", world, a.held_out, seed=2)
        started = time.perf_counter()
        adapter = train_adapter(tmp / "train", tmp / "run", steps=a.steps, rank=a.rank, lr=a.lr,
                                batch_size=a.batch_size, env={**os.environ, "MMGEN_CACHE": str(tmp / "cache")})
        report["training_s"] = round(time.perf_counter() - started, 1)
        report["adapter_bytes"] = adapter.stat().st_size
        report["demo_bytes"] = load_model("demo").path.stat().st_size
        report["base"] = score(tmp / "held-out", world, None, tmp)
        report["adapted"] = score(tmp / "held-out", world, adapter, tmp)
    for name in ("base", "adapted"):
        for group in ("changed", "unchanged"):
            s = report[name][group]
            print(f"{name:8s} {group:9s} n={s['n']:3d}  pitch {s['pitch_accuracy']:.3f} (chance "
                  f"{s['chance_pitch_accuracy']})  event F1 {s['f1']:.3f} (chance {s['chance_f1']})")
    share = report["adapter_bytes"] / report["demo_bytes"]
    print(f"adapter {report['adapter_bytes'] / 1e6:.2f} MB = {share:.2f}× the demo's file; trained in "
          f"{report['training_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    main()
