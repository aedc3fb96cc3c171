"""Forward passes at the released configs (batch 1, CPU): mmgen's fast path in fp32 and in the default precision
against the official computation in fp32, for the MM-UNet and for the SR U-Net (16 frames), measured in one run,
next to this machine's own matmul and convolution rates.

Each path runs in a fresh subprocess, so its peak RSS (resource.getrusage ru_maxrss) is its own. All paths run
the same model with the same random weights (every layer random, the zero-initialised ones included, so the
outputs are not trivially zero) and the same inputs:
- fast: the model as a pipeline loads it (mmgen.weights.load_model from a .safetensors of the random weights: conv
  and linear weights kept in the compute dtype), channels-last layout, fused norms, SDPA attention, frame convs
  as (3, 1) image convs, in fp32 and in `--precision auto`'s choice for the CPU (bf16 autocast where the CPU
  has native bf16);
- reference: tests/oracle_attention.py's loop-per-frame attention swapped in (fast vs reference = attention);
- official (and reference): the model built in memory in fp32, as the official code holds it; tests/official_computation.py, every op the way the official code computes it (standard layout,
  permuted GroupNorm, Conv1d over each pixel's frames, Conv3d, loop-per-frame attention; for the SR U-Net the
  einsum attention and all frames in one batch), so fast vs official measures everything mmgen changed.
Times are the best of the repeats (on a shared machine other work only ever slows a run down, so the fastest
run is the least disturbed one); every run is printed too. FLOPs are counted once per model (fast path, torch.utils.flop_counter). bf16 accuracy: the largest difference
between the bf16 and fp32 outputs of the fast path, as a fraction of the fp32 output's max-abs.

    python benchmarks/forward.py [--repeats 3] [--threads 2] [--sr-frames 16] [--no-sr] [--paths ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter

from mmgen.models import attention_ops, build_model
from mmgen.runtime.device import PRECISIONS, cpu_native_bf16, select_precision
from mmgen.runtime.memory import keep_freed_memory, use_huge_pages
from mmgen.weights import load_model
from mmgen.weights.checkpoint import save_model

TESTS = Path(__file__).resolve().parents[1] / "tests"
MM_PATHS = ("mm:fast:fp32", "mm:fast:auto", "mm:official:fp32")
SR_PATHS = ("sr:fast:fp32", "sr:fast:auto", "sr:official:fp32")
ARCHS = {"mm": "mm-unet", "sr": "sr-unet"}
KNOWN = (*MM_PATHS, "mm:reference:fp32", "mm:official:auto", *SR_PATHS, "sr:official:auto")
MATMUL_SIZE = 2048
# The dtype this CPU computes fastest in, whose conv rate every forward is held against ("the best applicable
# rate"): bf16 where it is native; elsewhere oneDNN emulates bf16, slower than fp32 (a bf16 conv rate then takes
# minutes to measure and means nothing).
BEST = "bf16" if cpu_native_bf16() else "fp32"
CONV = (16, 128, 64, 64)  # 3×3 conv 128→128 over 16 frames of 64²: the MM-UNet's commonest convolution
# What a profiled op counts as, by a piece of its name (the first class that matches; the rest is "other").
OP_CLASSES = (
    ("convolution", ("convolution",)),
    ("attention", ("scaled_dot_product", "attention", "softmax", "bmm")),
    ("projection", ("linear", "addmm", "aten::mm")),
    ("norm", ("norm",)),
    ("activation", ("silu", "sigmoid")),
)


@flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's counter knows the CUDA attention kernels but not the CPU one SDPA dispatches to here."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def precision_name(precision: str) -> str:
    name = precision if precision != "auto" else None
    dtype = select_precision(torch.device("cpu"), precision)
    return name or next(k for k, v in PRECISIONS.items() if v == dtype)


def random_model(arch: str) -> torch.nn.Module:
    """The released config with every layer random (default init for the layers the U-Nets zero)."""
    torch.manual_seed(0)
    model = build_model(arch).eval()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if params and hasattr(module, "reset_parameters") and all(not p.any() for p in params):
            module.reset_parameters()
    return model


def inputs(arch: str, model: torch.nn.Module, frames: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    if arch == "mm":
        video = torch.randn(1, *model.config.video_size, generator=g)
        return video, torch.randn(1, *model.config.audio_size, generator=g), torch.tensor([500])
    size, small = model.config.image_size, model.config.small_size
    x = torch.randn(1, 3, size, size, generator=g).expand(frames, -1, -1, -1)  # one noise image per video
    low_res = torch.rand(frames, 3, small, small, generator=g) * 2 - 1
    return x, torch.full((frames,), 500), low_res


def measure_path(path: str, repeats: int, sr_frames: int, out_file: str | None, weights: str) -> dict:
    """Median forward seconds, peak RSS and (fast fp32) FLOPs of one path, in this process."""
    sys.path.insert(0, str(TESTS))
    from official_computation import official_computation, official_sr_computation
    from oracle_attention import reference_attention

    arch, how, precision = path.split(":")
    dtype = PRECISIONS[precision_name(precision)]
    if how == "fast":
        keep_freed_memory()  # as the mmgen command does; the official computation runs with glibc's defaults
        model = load_model(weights, compute=dtype).model
    else:
        model = random_model(ARCHS[arch])
    args = inputs(arch, model, sr_frames)
    official = official_computation if arch == "mm" else official_sr_computation
    swap = {"fast": nullcontext, "reference": reference_attention, "official": official}[how]
    autocast = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else nullcontext()

    def forward():
        if arch == "mm":  # the same drawn window shifts on every call and in every path
            return model(*args, generator=torch.Generator().manual_seed(0))
        return model(*args)

    seconds, conv_rates = [], []
    with torch.no_grad(), swap(model), autocast:
        if arch == "sr":  # warm up on one frame: the official 16-frame forward takes minutes
            model(*(a[:1] for a in args))
        else:
            forward()
        for _ in range(repeats):
            if how == "fast":  # the machine's conv rate now, paired with this forward
                conv_rates.append(conv_rate(PRECISIONS[BEST]))
            start = time.perf_counter()
            out = forward()
            seconds.append(time.perf_counter() - start)
        peak = _peak_rss_mib()
        flops, by_op = None, None
        if how == "fast":
            with flop_counter.FlopCounterMode(display=False) as counter:
                model(*args) if arch == "sr" else forward()
            flops = counter.get_total_flops() if dtype == torch.float32 else None
            conv_flops = counter.get_flop_counts()["Global"].get(torch.ops.aten.convolution, 0)
            by_op = time_by_op(forward, dtype, conv_flops)
    if out_file:
        torch.save(out if isinstance(out, tuple) else (out,), out_file)
    return {"path": path, "precision": precision_name(precision), "seconds": seconds,
            "best_s": min(seconds), "peak_rss_mib": peak, "flops": flops, "conv_best": conv_rates,
            "by_op": by_op}  # fmt: skip


def op_class(name: str) -> str:
    return next((kind for kind, pieces in OP_CLASSES if any(p in name for p in pieces)), "other")


def _inside_chunked_attention(event) -> bool:
    """The matmuls and softmaxes of mmgen's chunked bf16 attention are attention, not projections."""
    while event is not None:
        if event.name == attention_ops.PROFILER_NAME:
            return True
        event = event.cpu_parent
    return False


def time_by_op(forward, dtype: torch.dtype, conv_flops: int) -> dict:
    """Where one more forward's time goes: seconds per class of op (OP_CLASSES; torch.profiler's self time of
    every op, which adds up to the forward), and the rate of its convolutions next to this machine's conv rate
    in the same dtype measured just before it: is the forward slow in its convolutions or around them?"""
    machine = conv_rate(dtype)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward()
    seconds = dict.fromkeys([name for name, _ in OP_CLASSES] + ["other"], 0.0)
    for event in prof.events():
        kind = "attention" if _inside_chunked_attention(event) else op_class(event.name)
        seconds[kind] += event.self_cpu_time_total / 1e6
    return {
        "seconds": seconds,
        "conv_gflops": conv_flops / 1e9 / seconds["convolution"],
        "conv_rate": machine,
    }


def _rate(fn, *args, flops: float, repeats: int = 5) -> float:
    fn(*args)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        seconds.append(time.perf_counter() - start)
    return flops / min(seconds) / 1e9


def conv_rate(dtype: torch.dtype, channels_last: bool = True) -> float:
    """GFLOP/s of the 3×3 conv CONV in `dtype`."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(dtype)
    x = torch.randn(CONV, dtype=dtype)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return _rate(conv, x, flops=2 * math.prod(CONV) * 128 * 9)


def machine_rates() -> dict[str, float]:
    """GFLOP/s of a 2048² matmul and of the 3×3 conv CONV, per dtype (bf16 only where native) and layout."""
    rates = {}
    n = MATMUL_SIZE
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))[: 2 if BEST == "bf16" else 1]:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        rates[f"matmul {name}"] = _rate(torch.mm, a, b, flops=2 * n**3)
        rates[f"conv {name}"] = conv_rate(dtype, channels_last=False)
        rates[f"conv {name} channels-last"] = conv_rate(dtype)
    return rates


def save_random(arch: str, folder: str) -> str:
    """The random model of `arch` as an mmgen .safetensors (fp32), for the fast paths to load. Written by a
    child process: a child's ru_maxrss starts from its parent's RSS at fork, so this one must stay small."""
    file = str(Path(folder) / f"{arch}-random.safetensors")
    subprocess.run([sys.executable, __file__, "--save-random", arch, "--out", file], check=True)
    return file


def _write_random(arch: str, file: str) -> None:
    model = random_model(ARCHS[arch])
    save_model(file, model, ARCHS[arch], model.config)


def run_in_subprocess(path: str, args, out_file: str | None, weights: str) -> dict:
    command = [sys.executable, __file__, "--path", path, "--weights", weights, "--repeats", str(args.sr_repeats if path[:2] == "sr"
               else args.repeats), "--threads", str(args.threads), "--sr-frames", str(args.sr_frames)]  # fmt: skip
    if out_file:
        command += ["--out", out_file]
    # The official code runs with PyTorch's defaults (4 KB pages); mmgen's paths as the mmgen command runs them.
    env = {**os.environ, **({"THP_MEM_ALLOC_ENABLE": "0"} if path.split(":")[1] != "fast" else {})}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {path} path failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_error(outputs: dict[str, tuple[torch.Tensor, ...]], fp32: str, other: str) -> list[float]:
    """Largest |other − fp32| per output, as a fraction of the fp32 output's max-abs."""
    return [((o.float() - r).abs().max() / r.abs().max()).item()
            for o, r in zip(outputs[other], outputs[fp32], strict=True)]  # fmt: skip


def report(results: dict[str, dict], rates: dict[str, float], errors: dict[str, list[float]], args) -> None:
    best = {p: max(v for k, v in rates.items() if p in k) for p in ("fp32", "bf16") if f"matmul {p}" in rates}
    print(f"Forward passes, released configs, batch 1, CPU, {args.threads} threads (torch {torch.__version__}); "
          f"native bf16: {'yes' if cpu_native_bf16() else 'no'}, --precision auto → {precision_name('auto')}")  # fmt: skip
    print("machine rates (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    print(f"{'path':<20} {'prec':>5} {'best s':>9} {'runs s':>18} {'peak RSS MiB':>13} {'GFLOP/s':>8} "
          f"{'of best':>8} {'of ' + BEST + ' conv':>13} {'conv GF/s':>10}")  # fmt: skip
    for path, r in results.items():
        arch = path[:2]
        flops = results.get(f"{arch}:fast:fp32", {}).get("flops")
        runs = " ".join(f"{s:.2f}" for s in r["seconds"])
        gflops = flops / 1e9 / r["best_s"] if flops else float("nan")
        # Of the machine's BEST conv rate measured right before each forward, in the same process: this shared
        # machine's speed drifts by up to 2.5× within minutes (the conv rate at the run's start is printed
        # above), so only a rate taken under the same conditions makes a fraction. The median forward/rate pair.
        pairs = (
            [flops / 1e9 / s / c for s, c in zip(r["seconds"], r["conv_best"], strict=True)]
            if flops and r["conv_best"]
            else []
        )
        of_conv = statistics.median(pairs) if pairs else gflops / rates[f"conv {BEST} channels-last"]
        then = f"{statistics.median(r['conv_best']):.0f}" if r["conv_best"] else "-"
        print(f"{path:<20} {r['precision']:>5} {r['best_s']:>9.2f} {runs:>18} {r['peak_rss_mib']:>13.0f} "
              f"{gflops:>8.0f} {gflops / best.get(r['precision'], best['fp32']):>8.0%} "
              f"{of_conv:>13.0%} {then:>10}")  # fmt: skip
    for arch, name in (("mm", "MM-UNet"), ("sr", f"SR U-Net ({args.sr_frames} frames)")):
        official = results.get(f"{arch}:official:fp32")
        for fast in (f"{arch}:fast:auto", f"{arch}:fast:fp32"):
            if official and fast in results:
                r = results[fast]
                print(f"{name}: fast {r['precision']} vs official fp32: {official['best_s'] / r['best_s']:.2f}x "
                      f"faster; peak RSS {r['peak_rss_mib'] / official['peak_rss_mib']:.2f}x of official")  # fmt: skip
        flops = results.get(f"{arch}:fast:fp32", {}).get("flops")
        if flops:
            print(f"{name}: {flops / 1e9:.0f} GFLOP per forward (torch.utils.flop_counter)")
    for path, r in results.items():
        if r.get("by_op"):
            seconds, total = r["by_op"]["seconds"], sum(r["by_op"]["seconds"].values())
            conv, machine = r["by_op"]["conv_gflops"], r["by_op"]["conv_rate"]
            shares = ", ".join(f"{kind} {s / total:.0%}" for kind, s in seconds.items())
            print(
                f"{path}: one profiled forward, {total:.2f} s: {shares}; its convolutions ran at {conv:.0f} "
                f"GFLOP/s = {conv / machine:.0%} of the {r['precision']} conv rate measured just before ({machine:.0f})"
            )
    for arch, errs in errors.items():
        print(f"{arch}: bf16 vs fp32 max difference / fp32 max-abs: " + ", ".join(f"{e:.2%}" for e in errs))


def main() -> None:
    use_huge_pages()  # the mmgen command's setting, inherited by the child processes that measure
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed MM-UNet forwards per path (after a warm-up); the best counts",
    )
    parser.add_argument("--sr-repeats", type=int, default=1, help="timed SR forwards per path")
    parser.add_argument("--sr-frames", type=int, default=16, help="frames per SR forward (one clip: 16)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--no-sr", action="store_true", help="skip the SR U-Net (its paths take minutes)")
    parser.add_argument("--paths", help=f"comma-separated, from {', '.join(KNOWN)} (default: all but "
                        "reference and official:auto)")  # fmt: skip
    parser.add_argument("--path", choices=KNOWN, help=argparse.SUPPRESS)  # one path, in a child process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--save-random", choices=ARCHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.repeats, args.sr_repeats, args.threads, args.sr_frames) < 1:
        parser.error("--repeats, --sr-repeats, --sr-frames and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    if args.save_random:
        _write_random(args.save_random, args.out)
        return
    if args.path:
        print(json.dumps(measure_path(args.path, args.repeats, args.sr_frames, args.out, args.weights)))
        return
    paths = args.paths.split(",") if args.paths else [*MM_PATHS, *([] if args.no_sr else SR_PATHS)]
    if not args.paths and precision_name("auto") == "fp32":  # auto is fp32 here: its paths would run twice
        paths = [p for p in paths if not p.endswith(":auto")]
    if unknown := [p for p in paths if p not in KNOWN]:
        parser.error(f"--paths: unknown {', '.join(unknown)}")
    rates = machine_rates()
    results, outputs, errors = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = {arch: save_random(arch, tmp) for arch in {path[:2] for path in paths}}
        for path in paths:
            keep = path.split(":")[1] == "fast"
            out_file = str(Path(tmp) / f"{path.replace(':', '_')}.pt") if keep else None
            results[path] = run_in_subprocess(path, args, out_file, weights[path[:2]])
            if out_file:
                outputs[path] = torch.load(out_file)
    for arch in ("mm", "sr"):
        fp32, auto = f"{arch}:fast:fp32", f"{arch}:fast:auto"
        if fp32 in outputs and auto in outputs and results[auto]["precision"] != "fp32":
            errors[arch] = max_error(outputs, fp32, auto)
    report(results, rates, errors, args)


if __name__ == "__main__":
    main()
