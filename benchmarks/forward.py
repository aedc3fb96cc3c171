"""One MM-UNet forward at the released base config (batch 1, fp32, CPU): mmgen's fast path against the
reference attention path and the official computation, measured in one run.

Each path runs in a fresh subprocess, so its peak RSS (resource.getrusage ru_maxrss) is its own. All three
run the same model with the same weights and inputs:
- fast: the model as it is;
- reference: tests/oracle_attention.py's loop-per-frame, explicit-softmax attention swapped in (the oracle
  the tests prove the fast attention against), so fast vs reference measures the attention alone;
- official: tests/official_computation.py, every op computed the way the official MM-Diffusion code does
  (permuted GroupNorm, Conv1d over each pixel's frames, Conv3d, 3-D resampling, the reference attention),
  so fast vs official measures everything mmgen changed.
FLOPs are counted once (fast path) with torch.utils.flop_counter and compared with this machine's measured
fp32 matmul rate.

    python benchmarks/forward.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils import flop_counter

from mmgen.models import build_model

TESTS = Path(__file__).resolve().parents[1] / "tests"
PATHS = ("fast", "reference", "official")
MATMUL_SIZE = 2048


@flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's counter knows the CUDA attention kernels but not the CPU one SDPA dispatches to here."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure_path(path: str, repeats: int) -> dict:
    """Median forward seconds and peak RSS of one path, in this process (a fresh one per path)."""
    sys.path.insert(0, str(TESTS))
    from official_computation import official_computation
    from oracle_attention import reference_attention

    swap = {"fast": nullcontext, "reference": reference_attention, "official": official_computation}[path]

    torch.manual_seed(0)
    model = build_model("mm-unet").eval()
    frames, channels, height, width = model.config.video_size
    video = torch.randn(1, frames, channels, height, width)
    audio = torch.randn(1, *model.config.audio_size)
    timesteps = torch.tensor([500])

    def forward() -> None:
        # The same drawn window shifts on every call and in every path.
        model(video, audio, timesteps, generator=torch.Generator().manual_seed(0))

    seconds = []
    with torch.no_grad(), swap(model):
        forward()  # warm-up: allocator, index tables, kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            forward()
            seconds.append(time.perf_counter() - start)
        peak = _peak_rss_mib()
        flops = None
        if path == "fast":
            with flop_counter.FlopCounterMode(display=False) as counter:
                forward()
            flops = counter.get_total_flops()
    return {"path": path, "seconds": seconds, "median_s": statistics.median(seconds), "peak_rss_mib": peak,
            "flops": flops}  # fmt: skip


def matmul_gflops(repeats: int = 10) -> float:
    """This machine's fp32 matmul rate: the median over `repeats` products of two 2048² matrices."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * MATMUL_SIZE**3 / statistics.median(seconds) / 1e9


def run_in_subprocess(path: str, repeats: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--path", path, "--repeats", str(repeats), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {path} path failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict[str, dict], matmul: float, repeats: int, threads: int) -> None:
    fast = results["fast"]
    gflop = fast["flops"] / 1e9
    print(f"MM-UNet forward, released base config, batch 1, fp32, CPU, {threads} threads, "
          f"median of {repeats} (torch {torch.__version__})")  # fmt: skip
    print(f"{'path':<10} {'median s':>9} {'runs s':>24} {'peak RSS MiB':>13} {'GFLOP/s':>8}")
    for name in PATHS:
        r = results[name]
        runs = " ".join(f"{s:.2f}" for s in r["seconds"])
        print(f"{name:<10} {r['median_s']:>9.2f} {runs:>24} {r['peak_rss_mib']:>13.0f} "
              f"{gflop / r['median_s']:>8.1f}")  # fmt: skip
    floor_s = gflop / matmul  # these FLOPs at the machine's matmul rate: no fp32 path doing them is faster
    for name, what in (("reference", "reference attention"), ("official", "official computation")):
        other = results[name]
        print(f"speed-up fast vs {what}: {other['median_s'] / fast['median_s']:.2f}x "
              f"(ceiling {other['median_s'] / floor_s:.2f}x); "
              f"peak RSS fast / {name}: {fast['peak_rss_mib'] / other['peak_rss_mib']:.2f}")  # fmt: skip
    print(f"forward FLOPs: {gflop:.1f} GFLOP (torch.utils.flop_counter, fast path)")
    print(f"fp32 matmul ({MATMUL_SIZE}²): {matmul:.1f} GFLOP/s; the fast path reaches "
          f"{gflop / fast['median_s'] / matmul:.0%} of it. Ceiling: those FLOPs at that rate take "
          f"{floor_s:.2f} s, so no fp32 path can beat the slower paths by more than that")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per path (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)  # one path, in a child process
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    if args.path:
        print(json.dumps(measure_path(args.path, args.repeats)))
        return
    matmul = matmul_gflops()
    results = {path: run_in_subprocess(path, args.repeats, args.threads) for path in PATHS}
    report(results, matmul, args.repeats, args.threads)


if __name__ == "__main__":
    main()
