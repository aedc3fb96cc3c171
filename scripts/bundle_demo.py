"""Ship a demo training run as mmgen's bundled `demo` model (issue 7).

    python scripts/bundle_demo.py runs/demo                 # the run's final model.safetensors
    python scripts/bundle_demo.py runs/demo --checkpoint    # or its newest checkpoint, while it still trains

Writes, inside the package so a wheel carries them:
  mmgen/assets/demo.safetensors   the EMA weights in fp16 (half the size; the model runs in fp32 after loading),
                                  with architecture, config and training facts in the file's metadata;
  mmgen/assets/demo-train.yaml    the run's resolved config.yaml (the last stage's), next to the weights;
and records the file's sha256 in presets/models/demo.yaml, which mmgen checks every time it loads the model.
Measure it afterwards with benchmarks/demo_quality.py (--json mmgen/assets/demo-metrics.json).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import torch
import yaml

from mmgen.train.checkpoint import latest_checkpoint
from mmgen.weights.architecture import read_header
from mmgen.weights.checkpoint import read_state_dict, save_model

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "mmgen" / "assets"
ENTRY = ROOT / "presets" / "models" / "demo.yaml"


def trained_weights(run: Path, from_checkpoint: bool) -> tuple[Path, int]:
    """The run's EMA weights to ship and the steps behind them: its final model, or its newest checkpoint."""
    if from_checkpoint:
        checkpoint = latest_checkpoint(run / "checkpoints")
        if checkpoint is None:
            raise SystemExit(f"error: {run}/checkpoints holds no complete checkpoint yet")
        return checkpoint.ema_weights, checkpoint.step
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(f"error: {weights} does not exist (still training? pass --checkpoint)")
    sidecar = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
    return weights, sidecar["training"]["steps"]


def record_sha256(entry: Path, sha256: str) -> None:
    """Set `sha256:` under `weights:` in the registry entry, keeping its comments."""
    text = entry.read_text(encoding="utf-8")
    text = re.sub(r"\n  sha256: [0-9a-f]+", "", text)
    text, count = re.subn(r"(\n  bundled: demo\.safetensors)", rf"\1\n  sha256: {sha256}", text)
    if count != 1:
        raise SystemExit(f"error: {entry} has no `bundled: demo.safetensors` line under weights")
    entry.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run directory of `mmgen finetune` (-o)")
    parser.add_argument("--checkpoint", action="store_true", help="bundle the newest checkpoint's EMA weights")
    args = parser.parse_args(argv)

    weights, steps = trained_weights(args.run, args.checkpoint)
    header = read_header(weights)
    if header is None or header.arch != "mm-unet":
        raise SystemExit(f"error: {weights} is not an mmgen mm-unet safetensors file")
    run_config = yaml.safe_load((args.run / "config.yaml").read_text(encoding="utf-8"))
    # A later stage starts from an earlier stage's weights (`init`); the recipe files tell the whole story.
    training = {"steps": steps, "init": run_config.get("init"), "weights": "ema", "stored_as": "fp16",
                "recipe": ["presets/demo-train.yaml", "presets/demo-train-stage2.yaml"]}
    ASSETS.mkdir(exist_ok=True)
    sha256 = save_model(
        ASSETS / "demo.safetensors",
        read_state_dict(weights),
        "mm-unet",
        header.config,
        {"source": "mmgen finetune --scratch on mmgen.data.synthetic clips", "training": training},
        dtype=torch.float16,
    )
    shutil.copyfile(args.run / "config.yaml", ASSETS / "demo-train.yaml")
    record_sha256(ENTRY, sha256)
    size = (ASSETS / "demo.safetensors").stat().st_size
    print(f"bundled {weights} ({steps} steps) as {ASSETS / 'demo.safetensors'}: {size / 1e6:.1f} MB, sha256 {sha256}")


if __name__ == "__main__":
    sys.exit(main())
