"""End-to-end cost of `mmgen soundtrack` at the paper's released size: seconds of compute per second of video,
per precision, decode, windows and encode included, measured in one run.

A released-config MM-UNet with random weights (benchmarks/forward.py's `random_model`) is saved as an mmgen
.safetensors in a temporary folder and passed by path, the way `-m FILE` does; the input is a 64×64, 10 fps
clip with sound. Each precision runs the real `soundtrack` pipeline in a fresh subprocess (its own peak RSS),
with few sampler steps so the run stays short; model calls are counted. From the measured seconds per model
call and the rest (load, decode, windowing, encode), it states what a 10 s soundtrack costs per sampling
setting: windows × calls per window × seconds per call + the rest.

    python benchmarks/soundtrack.py [--seconds 3.2] [--steps 2] [--precisions fp32,auto] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from forward import precision_name, random_model  # noqa: E402

from mmgen.models.mmunet import MMUNet  # noqa: E402
from mmgen.pipelines.windows import plan_windows  # noqa: E402
from mmgen.runtime.memory import keep_freed_memory, use_huge_pages  # noqa: E402

# calls per window of each sampling setting for a soundtrack (replacement guidance costs one call per step;
# the paper's gradient guidance one forward and one backward, ≈3 forwards, per step)
SETTINGS = {
    "--preset fast (dpm++ 15)": 15,
    "default (25: ddim for the paper's models, dpm++ for a file)": 25,
    "paper (ddpm 1000 + gradient guidance)": 3 * 1000,
}
OVERLAP = 0.25  # the command's default


def measure(model_file: str, clip: str, out: str, steps: int, precision: str) -> dict:
    """One soundtrack run in this process: wall seconds, model calls, and the seconds those calls took."""
    from mmgen.pipelines import SoundtrackSettings, soundtrack

    calls, inside = [], []
    forward = MMUNet.forward

    def counted(self, *args, **kwargs):
        start = time.perf_counter()
        result = forward(self, *args, **kwargs)
        calls.append(1)
        inside.append(time.perf_counter() - start)
        return result

    MMUNet.forward = counted
    start = time.perf_counter()
    settings = SoundtrackSettings(
        model=model_file, sampler="dpm++", steps=steps, seed=0, precision=precision, device="cpu"
    )
    soundtrack(clip, out, settings, overwrite=True)
    wall = time.perf_counter() - start
    return {"precision": precision_name(precision), "wall_s": wall, "calls": len(calls),
            "model_s": sum(inside), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main() -> None:
    use_huge_pages()  # the mmgen command's setting, inherited by the child processes that measure
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.2, help="length of the input clip (2 windows at 3.2 s)")
    p.add_argument("--steps", type=int, default=2, help="sampler steps per window (few: the run stays short)")
    p.add_argument("--precisions", default="fp32,auto", help="comma-separated: fp32, bf16, auto")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # MODEL CLIP OUT PRECISION
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        keep_freed_memory()  # as the mmgen command does for itself
        print(json.dumps(measure(*args.child[:3], args.steps, args.child[3])))
        return
    from media_factory import write_test_video

    from mmgen.weights.checkpoint import save_model

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = random_model("mm-unet")
        model_file = str(Path(tmp) / "released-random.safetensors")
        save_model(Path(model_file), model, "mm-unet", model.config, {"source": "benchmarks/soundtrack.py"})
        config = model.config
        del model
        clip = str(Path(tmp) / "clip.mp4")
        write_test_video(clip, seconds=args.seconds, fps=config.fps, size=tuple(config.video_size[2:]))
        for precision in args.precisions.split(","):
            if precision_name(precision) in {r["precision"] for r in results.values()}:
                print(f"--precisions: {precision} is {precision_name(precision)} on this CPU, measured already")
                continue
            command = [sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
                       "--child", model_file, clip, str(Path(tmp) / f"out_{precision}.mp4"), precision]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"soundtrack in {precision} failed:\n{done.stderr}")
            results[precision] = json.loads(done.stdout.strip().splitlines()[-1])

    frames = round(args.seconds * config.fps)
    windows = len(plan_windows(frames, config.frames, OVERLAP))
    windows_10s = len(plan_windows(round(10 * config.fps), config.frames, OVERLAP))
    print(f"mmgen soundtrack, released config (random weights), {args.seconds:g} s clip = {windows} windows × "
          f"{args.steps} steps, CPU, {args.threads} threads (torch {torch.__version__})")  # fmt: skip
    print(f"{'precision':<10} {'wall s':>8} {'s per video s':>14} {'calls':>6} {'s per call':>11} {'rest s':>7} "
          f"{'peak RSS MiB':>13}")  # fmt: skip
    for r in results.values():
        per_call = r["model_s"] / r["calls"]
        print(f"{r['precision']:<10} {r['wall_s']:>8.1f} {r['wall_s'] / args.seconds:>14.1f} {r['calls']:>6} "
              f"{per_call:>11.2f} {r['wall_s'] - r['model_s']:>7.1f} {r['peak_rss_mib']:>13.0f}")  # fmt: skip
    print(
        f"A 10 s soundtrack ({windows_10s} windows) per sampling setting, compute seconds (per video second):"
    )
    for setting, calls in SETTINGS.items():
        cells = []
        for r in results.values():
            total = windows_10s * calls * r["model_s"] / r["calls"] + (r["wall_s"] - r["model_s"])
            cells.append(f"{r['precision']} {total:,.0f} s ({total / 10:,.0f} s/s)")
        print(f"  {setting:<40} " + "; ".join(cells))


if __name__ == "__main__":
    main()
