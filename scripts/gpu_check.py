"""Run every CUDA path of mmgen once on a machine with a GPU and print a pass/fail table (4-6 minutes on one GPU).

    pip install -e . && python scripts/gpu_check.py [--device cuda:1] [--keep DIR]

What it runs, each as a user would (the `mmgen` command in a subprocess) or, for the model-level checks, in this
process: `doctor`; `generate` with the bundled demo in fp32, bf16 and fp16; the same seed twice on the device
(bitwise the same samples); the device's samples against the CPU's; `soundtrack` (replacement guidance, and
gradient guidance in fp16), `animate`, `retake`, a `batch`; a forward of the released-size SR U-Net (16 frames
64 -> 256) and MM-UNet on random weights in every precision, with the SR memory budget that must not shrink
between calls, and a training step of the MM-UNet with gradient checkpointing; `finetune` with LoRA (bf16, then
fp16 with its loss scaler) and `generate --adapter`; a run checkpointed on the CPU resumed on the GPU, that one
resumed on the CPU, and then in fp16; `torchrun` over two GPUs when there are two. Nothing outside the machine
is needed: the demo model ships inside the package and the training clips are made here (mmgen.data.synthetic).

Exit status: 0 when every check passed (a skipped one is not a failure), 1 when any failed, 2 when this machine
has no CUDA device. Everything is written under a temporary folder (removed unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

COMMAND_TIMEOUT = 240  # seconds for one mmgen command
TOTAL_BUDGET = 470  # seconds: checks still to run after this are reported as not run (the promise is < 8 min)


class Skip(Exception):
    """A check that does not apply on this machine (e.g. torchrun with one GPU)."""


class Checks:
    def __init__(self, device: str, work: Path):
        self.device, self.work = device, work
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MMGEN_")}
        self.env.update(MMGEN_CACHE=str(work / "cache"), MMGEN_PRESETS=str(work / "presets"),
                        XDG_CONFIG_HOME=str(work / "config"), NO_COLOR="1")
        self.rows: list[tuple[str, str, float, str]] = []
        self.started = time.monotonic()

    def run(self, name: str, check: Callable[[], str]) -> None:
        if time.monotonic() - self.started > TOTAL_BUDGET:
            self._row(name, "NOT RUN", 0.0, f"over the {TOTAL_BUDGET} s budget")
            return
        began = time.monotonic()
        try:
            result, detail = "PASS", check() or ""
        except Skip as e:
            result, detail = "SKIP", str(e)
        except Exception as e:  # a check's failure is a row of the table, not the end of the run
            result, detail = "FAIL", _last_line(e)
            (self.work / "failures.log").open("a").write(f"== {name}\n{traceback.format_exc()}\n")
        self._row(name, result, time.monotonic() - began, detail)

    def _row(self, name: str, result: str, seconds: float, detail: str) -> None:
        self.rows.append((name, result, seconds, detail))
        print(f"{name:<44} {result:<7} {seconds:6.1f}  {detail}", flush=True)

    def mmgen(self, *args, device: str | None = None, expect: int = 0) -> subprocess.CompletedProcess:
        """`python -m mmgen ARGS --device DEVICE` (the device of this check unless given); raises on another exit
        status, with the command's last error line."""
        argv = [sys.executable, "-m", "mmgen", *map(str, args)]
        if device != "none":
            argv += ["--device", device or self.device]
        return _run(argv, self.env, expect)

    def ran_here(self, sidecar: Path) -> str:
        """The `device` a command's sidecar records, which must be this check's GPU."""
        device = json.loads(sidecar.read_text())["device"]
        _require(device.startswith(f"{self.device} ("), f"sidecar: ran on {device}")
        return device


def _run(argv: list[str], env: dict[str, str], expect: int = 0) -> subprocess.CompletedProcess:
    argv = [str(a) for a in argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != expect:
        said = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"exit {done.returncode}: {said[-1] if said else '(nothing said)'}  [{' '.join(argv[2:6])} …]")
    return done


def _last_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:160]


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda:0", help="the CUDA device to check (default cuda:0)")
    parser.add_argument("--keep", type=Path, help="keep everything written in this folder (default: a temporary one)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build: {built}); nothing checked",
              file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type != "cuda" or (device.index or 0) >= torch.cuda.device_count():
        print(f"gpu_check: --device {args.device}: not one of the {torch.cuda.device_count()} CUDA devices",
              file=sys.stderr)
        return 2
    device = torch.device("cuda", device.index or 0)

    work = args.keep or Path(tempfile.mkdtemp(prefix="mmgen-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    props = torch.cuda.get_device_properties(device)
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) · {props.name}, compute {props.major}.{props.minor}, "
          f"{props.total_memory / 2**30:.0f} GiB · {torch.cuda.device_count()} GPU(s) · work folder {work}")
    print(f"{'check':<44} {'result':<7} {'s':>6}  detail")
    checks = Checks(str(device), work)
    try:
        _all(checks, device)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    failed = [row for row in checks.rows if row[1] in ("FAIL", "NOT RUN")]
    counts = {r: sum(row[1] == r for row in checks.rows) for r in ("PASS", "FAIL", "SKIP", "NOT RUN")}
    print(" · ".join(f"{n} {r.lower()}" for r, n in counts.items() if n) + f" · {time.monotonic() - checks.started:.0f} s")
    if failed and args.keep is not None:
        print(f"tracebacks: {work / 'failures.log'}")
    return 1 if failed else 0


def _all(c: Checks, device) -> None:
    import torch

    from mmgen.runtime.device import select_precision

    auto = select_precision(device, "auto")
    half = torch.bfloat16 if auto == torch.bfloat16 else torch.float16
    half_name = "bf16" if half == torch.bfloat16 else "fp16"
    world = c.work / "world"

    def doctor() -> str:
        report = json.loads(c.mmgen("doctor", "--json", device="none").stdout)
        gpus = report["devices"]["cuda"]
        _require(gpus and report["devices"]["auto"].startswith("cuda:0"), f"doctor saw {report['devices']}")
        return f"--device auto → {report['devices']['auto']}"

    c.run("doctor sees the GPU", doctor)

    def generate(precision: str) -> Callable[[], str]:
        def check() -> str:
            out = c.work / f"gen-{precision}"
            c.mmgen("generate", "-n", 2, "--seed", 5, "--precision", precision, "-o", out, "--json")
            device = c.ran_here(out / "clip_0001.json")
            _require(device.endswith(f", {precision})"), f"sidecar: ran in {device}")
            _require((out / "clip_0001.mp4").stat().st_size > 0 and (out / "clip_0001_frames.png").is_file(), "files")
            return device

        return check

    for precision in ("fp32", "bf16", "fp16"):
        c.run(f"generate demo {precision}", generate(precision))

    def repeatable() -> str:
        from mmgen.diffusion.clips import generate_clips
        from mmgen.diffusion.sampling_config import SamplingConfig
        from mmgen.runtime.device import Compute
        from mmgen.weights import load_model

        found = []
        for where, dtype in ((device, auto), (device, auto), (torch.device("cpu"), torch.float32),
                             (device, torch.float32)):  # fmt: skip
            loaded = load_model("demo", where, dtype)
            sampling = loaded.entry.sampling if loaded.entry is not None else SamplingConfig()
            clips = generate_clips(loaded.model, sampling, Compute(where, dtype), [11, 12])
            _require(all(bool(torch.isfinite(v).all()) for v in clips.values()), f"{where} {dtype}: not finite")
            found.append(clips)
        _require(all(torch.equal(found[0][k], found[1][k]) for k in found[0]), "the same seed twice: other samples")
        diff = max(float((found[2][k] - found[3][k]).abs().mean()) for k in found[2])
        _require(diff < 0.05, f"fp32 on the GPU vs the CPU: mean |difference| {diff:.3g}")
        return f"same seed twice: bitwise equal; fp32 GPU vs CPU mean |diff| {diff:.2g}"

    c.run("same seed, same device = same clip", repeatable)

    clip = c.work / "gen-fp32" / "clip_0000.mp4"

    def soundtrack() -> str:
        out = c.work / "st.mp4"
        c.mmgen("soundtrack", clip, "-o", out, "--seed", 3, "--wav")
        _require(out.with_suffix(".wav").is_file(), "no .wav written")
        return c.ran_here(out.with_suffix(".json"))

    c.run("soundtrack (replacement)", soundtrack)

    def soundtrack_gradient() -> str:
        out = c.work / "st-gradient.mp4"
        c.mmgen("soundtrack", clip, "-o", out, "--guidance", "gradient", "--precision", "fp16")
        return c.ran_here(out.with_suffix(".json"))

    c.run("soundtrack (gradient guidance, fp16)", soundtrack_gradient)

    def animate() -> str:
        out = c.work / "anim.mp4"
        c.mmgen("animate", c.work / "st.wav", "-o", out)
        return c.ran_here(out.with_suffix(".json"))

    c.run("animate", animate)

    def retake() -> str:
        out = c.work / "retake.mp4"
        c.mmgen("retake", c.work / "st.mp4", "--range", "0.2:0.5", "-o", out)
        return c.ran_here(out.with_suffix(".json"))

    c.run("retake", retake)

    def batch() -> str:
        jobs = c.work / "jobs.yaml"
        jobs.write_text(f"defaults: {{steps: 10}}\njobs:\n  - {{kind: generate, name: g, num: 2, seed: 1}}\n"
                        f"  - {{kind: soundtrack, input: {json.dumps(str(clip))}, name: s, seed: 2}}\n")
        c.mmgen("batch", jobs, "-o", c.work / "batch")
        made = sorted(p.name for p in (c.work / "batch").glob("*.mp4"))
        _require(len(made) == 3, f"batch wrote {made}")
        return ", ".join(made)

    c.run("batch (2 generate + 1 soundtrack)", batch)

    def sr_forward() -> str:
        from mmgen.models import build_model
        from mmgen.models.storage import store_for_compute
        from mmgen.runtime.device import Compute, memory_budget

        said = []
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            model = store_for_compute(build_model("sr-unet", None, device=device).eval(), dtype)
            config = model.config
            g = torch.Generator(device).manual_seed(0)
            x = torch.randn(16, 3, config.image_size, config.image_size, device=device, generator=g)
            low = torch.randn(16, 3, config.small_size, config.small_size, device=device, generator=g)
            t = torch.full((16,), 500, device=device)
            chunks = []
            with torch.no_grad(), Compute(device, dtype).autocast():
                for _ in range(2):
                    chunks.append(max(1, memory_budget(device) // model.frame_bytes(*x.shape[-2:])))
                    out = model(x, t, low)
            torch.cuda.synchronize(device)
            _require(out.shape == (16, config.out_channels, config.image_size, config.image_size), f"shape {out.shape}")
            _require(bool(torch.isfinite(out).all()), f"{dtype}: not finite")
            _require(chunks[1] >= min(chunks[0], 16), f"{dtype}: frames per call fell from {chunks[0]} to {chunks[1]}")
            said.append(f"{str(dtype)[6:]} ok")
            del model, out
            torch.cuda.empty_cache()
        return f"16 frames {config.small_size}→{config.image_size}: " + ", ".join(said)

    c.run("SR U-Net forward, released size, random", sr_forward)

    def mm_forward() -> str:
        from mmgen.models import build_model
        from mmgen.models.storage import store_for_compute
        from mmgen.runtime.device import Compute

        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            model = store_for_compute(build_model("mm-unet", None, device=device).eval(), dtype)
            g = torch.Generator(device).manual_seed(0)
            video = torch.randn(2, *model.config.video_size, device=device, generator=g)
            audio = torch.randn(2, *model.config.audio_size, device=device, generator=g)
            with torch.no_grad(), Compute(device, dtype).autocast():
                v, a = model(video, audio, torch.tensor([10, 900], device=device))
            _require(v.shape == video.shape and a.shape == audio.shape, "shapes")
            _require(bool(torch.isfinite(v).all() and torch.isfinite(a).all()), f"{dtype}: not finite")
            del model
        model = build_model("mm-unet", None, device=device).train()
        model.gradient_checkpointing = True
        with Compute(device, half).autocast():
            v, a = model(video[:1], audio[:1], torch.tensor([500], device=device))
            loss = v.float().pow(2).mean() + a.float().pow(2).mean()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        _require(grads and all(bool(torch.isfinite(g).all()) for g in grads), "training step: gradients")
        return f"fp32/bf16/fp16 forwards; a {half_name} training step with checkpointing"

    c.run("MM-UNet forward + backward, released size", mm_forward)

    def make_world() -> str:
        _run([sys.executable, "-m", "mmgen.data.synthetic", world, "--n", 24, "--seed", 1, "--frames", 8,
              "--size", 16, "--sample-rate", 8000], c.env)  # the demo's clip format
        return f"{len(list(world.glob('*.mp4')))} clips"

    c.run("training clips (synthetic world)", make_world)

    def lora(precision: str) -> Callable[[], str]:
        def check() -> str:
            run = c.work / f"lora-{precision}"
            done = c.mmgen("finetune", world, "--from", "demo", "--lora", 4, "-o", run, "--steps", 6,
                           "--batch-size", 4, "--save-every", 3, "--sample-every", 3, "--precision", precision,
                           "--json")  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
            _require(result["step"] == 6 and (run / "adapter.safetensors").is_file(), f"finetune said {result}")
            _require((run / "samples").is_dir() and any((run / "samples").iterdir()), "no preview written")
            _require(f"{c.device} (" in done.stderr, "the run did not say it trained on the GPU")
            return f"6 steps, adapter and previews written ({precision})"

        return check

    c.run(f"finetune --lora (auto: {half_name})", lora("auto"))
    c.run("finetune --lora (fp16, loss scaler)", lora("fp16"))

    def adapter() -> str:
        out = c.work / "gen-adapter"
        c.mmgen("generate", "-n", 1, "--adapter", c.work / "lora-fp16" / "adapter.safetensors", "-o", out)
        return c.ran_here(out / "clip_0000.json")

    c.run("generate --adapter (merged on the GPU)", adapter)

    def resume() -> str:
        run = c.work / "resume"
        common = ["--batch-size", 4, "--save-every", 2, "--sample-every", 0, "--json"]
        c.mmgen("finetune", world, "--from", "demo", "-o", run, "--steps", 2, *common, device="cpu")
        said = []
        for steps, where, extra in ((4, None, []), (6, "cpu", []), (8, None, ["--precision", "fp16"])):
            done = c.mmgen("finetune", world, "-o", run, "--resume", "--steps", steps, *common, *extra, device=where)
            _require(json.loads(done.stdout.strip().splitlines()[-1])["step"] == steps, f"resume to {steps}")
            # each resume changes the kind of device (cpu → gpu → cpu → gpu): the noise stream restarts, and is said to
            _require("the noise stream restarted" in done.stderr, f"resume to {steps}: no note on the noise stream")
            said.append(f"{'cpu' if where == 'cpu' else 'gpu'}{' fp16' if extra else ''}")
        _require((run / "model.safetensors").is_file(), "no model written")
        return "cpu → " + " → ".join(said)

    c.run("resume cpu ckpt on GPU, back, then fp16", resume)

    def torchrun() -> str:
        if torch.cuda.device_count() < 2:
            raise Skip("one GPU")
        run = c.work / "ddp"
        _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmgen",
              "finetune", world, "--from", "demo", "--lora", 4, "-o", run, "--steps", 4, "--batch-size", 8,
              "--save-every", 2, "--sample-every", 0, "--device", "cuda"], c.env)  # fmt: skip
        _require((run / "adapter.safetensors").is_file(), "no adapter written")
        return "2 processes, NCCL"

    c.run("torchrun finetune over 2 GPUs", torchrun)


if __name__ == "__main__":
    sys.exit(main())
