"""Peak training memory of the released-size MM-UNet: full fine-tuning vs a LoRA adapter, measured in one run.

Both runs are the real `mmgen finetune` command (batch 1, fp32, CPU, a few steps) on the same two clips at the
released format (16 frames of 64×64, 1.6 s at 16 kHz), starting from the same randomly initialised
released-size model; each runs in a fresh process whose peak RSS is read from the kernel (ru_maxrss).
Also printed: the trainable-parameter share and the size of what each run writes (model vs adapter).

    python benchmarks/lora_memory.py --steps 2 --rank 16
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

from mmgen.adapters import LoraSpec, attach
from mmgen.data.synthetic import WorldConfig, write_dataset
from mmgen.models import build_model
from mmgen.weights import save_model

_PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
)


def peak_rss_mib(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of `command`, run under a fresh parent so only its own peak is counted."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PEAK, *command], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    kib, code = out.stdout.split()[-2:]
    if code != "0":
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return int(kib) / 1024, seconds


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--targets", default="attention+conv")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="also measure both with activations recomputed in the backward pass")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)

    released = build_model("mm-unet")
    total = sum(t.numel() for t in released.parameters())
    trainable = sum(t.numel() for t in attach(build_model("mm-unet", device="meta"), LoraSpec(a.rank, a.rank, a.targets)))
    report = {"parameters": total, "lora_rank": a.rank, "lora_targets": a.targets,
              "lora_trainable": trainable, "lora_share": trainable / total, "runs": {}}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MMGEN_CACHE": "", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="mmgen-lora-memory-") as tmp:
        tmp = Path(tmp)
        env["MMGEN_CACHE"] = str(tmp / "cache")
        model = tmp / "released.safetensors"
        save_model(model, released, "mm-unet", released.config)
        del released
        data = tmp / "clips"
        write_dataset(data, WorldConfig(frames=16, size=64, sample_rate=16000), 2, seed=0)
        common = ["-m", "mmgen", "finetune", str(data), "--from", str(model), "--steps", str(a.steps),
                  "--batch-size", "1", "--device", "cpu", "--precision", "fp32", "--save-every", "0",
                  "--sample-every", "0", "--probe-every", "0", "--cache-dir", str(tmp / "clip-cache")]
        lora = ["--lora", str(a.rank), "--lora-targets", a.targets]
        variants = [("full", []), (f"lora rank {a.rank}", lora)]
        if a.gradient_checkpointing:
            ckpt = ["--gradient-checkpointing"]
            variants += [("full + checkpointing", ckpt), (f"lora rank {a.rank} + checkpointing", lora + ckpt)]
        for label, extra in variants:
            run = tmp / label.replace(" ", "-")
            peak, seconds = peak_rss_mib([sys.executable, *common, "-o", str(run), *extra], env)
            written = run / ("adapter.safetensors" if "--lora" in extra else "model.safetensors")
            report["runs"][label] = {"peak_rss_mib": round(peak), "seconds": round(seconds, 1),
                                     "writes": written.name, "file_mib": round(written.stat().st_size / 2**20, 2)}
            print(f"{label}: peak RSS {peak:,.0f} MiB, {seconds:.0f} s, writes {written.name} "
                  f"({written.stat().st_size / 2**20:,.1f} MiB)", flush=True)
    runs = list(report["runs"].values())
    print(f"trainable: full {total:,} · LoRA {trainable:,} ({100 * trainable / total:.2f} %)")
    for full, adapted in zip(runs[::2], runs[1::2], strict=True):
        ratio = adapted["peak_rss_mib"] / full["peak_rss_mib"]
        report.setdefault("lora_vs_full_peak", []).append(round(ratio, 3))
        print(f"peak RSS LoRA / full: {ratio:.2f}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
