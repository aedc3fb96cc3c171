"""What one 1.6 s window costs with the official models' sampling settings at the released size, measured in
one run: the paper's unconditional and conditional runs, the models' own (default) settings, and the presets.

How it is computed (say so wherever the numbers are quoted):
- model calls per window are counted, not assumed: the real sampler (`mmgen.diffusion.samplers.sample`, with
  the setting's guidance for video-to-audio) runs over a stand-in denoiser that counts its calls, and which of
  them ran under autograd (gradient guidance: a forward and a backward);
- seconds per window = calls × the measured time of one forward of the released 133.7 M-parameter MM-UNet
  (16 frames of 64×64, 1.6 s of 16 kHz audio, batch 1, random weights, no autograd), or of one forward plus
  the backward to the generated modality for the calls under autograd. Sampler arithmetic is left out (it is
  < 1 % of a released-size forward).
- `--sr` also times one forward of the released 64→256 upsampler (311 M parameters) on one frame, which
  `generate --upscale` runs 16 frames × 25 DDIM steps per window.

    python benchmarks/sampling_cost.py [--threads 2] [--repeats 1] [--sr]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from mmgen.diffusion.denoisers import Prediction
from mmgen.diffusion.samplers import sample
from mmgen.diffusion.sampling_config import SamplingConfig, load_sampling_preset
from mmgen.models import build_model
from mmgen.weights import load_registry


@dataclass(frozen=True)
class Calls:
    forward: int  # model calls without autograd
    backward: int  # calls with a backward through the model (gradient guidance)


def count_calls(config: SamplingConfig, conditional: bool) -> Calls:
    """Run the sampler of `config` over a counting stand-in denoiser (tiny tensors: the count does not depend
    on the shapes); conditional = video-to-audio with the setting's guidance."""
    counts = {True: 0, False: 0}

    def denoise(x, t):
        counts[torch.is_grad_enabled()] += 1
        coupling = sum(v.mean() for v in x.values())  # like the MM-UNet, each modality sees the other
        return Prediction(eps={k: 0.1 * v + 0.01 * coupling for k, v in x.items()})

    generator = torch.Generator().manual_seed(0)
    x_T = {
        "video": torch.randn(1, 2, 3, 4, 4, generator=generator),  # (B, F, C, H, W)
        "audio": torch.randn(1, 1, 16, generator=generator),  # (B, 1, L)
    }
    condition = config.condition({"video": torch.zeros_like(x_T["video"])}) if conditional else None
    sample(denoise, x_T, config, generator=generator, condition=condition)
    return Calls(forward=counts[False], backward=counts[True])


def settings() -> dict[str, tuple[SamplingConfig, bool]]:
    """label → (sampling config, conditional) for every setting an official model runs with."""
    own = load_registry().get("landscape").sampling
    paper = load_sampling_preset("paper", over=own)
    table = {
        "paper, unconditional (`--preset paper`)": (paper, False),
        "paper, video-to-audio (`--preset paper`)": (paper.for_conditional(), True),
        "default, unconditional (landscape/aist++ own)": (own, False),
        "default, video-to-audio (landscape/aist++ own)": (own.for_conditional(), True),
    }
    for name in ("fast", "balanced"):
        preset = load_sampling_preset(name, over=own)
        table[f"`--preset {name}`, video-to-audio"] = (preset.for_conditional(), True)
    return table


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_released_mmunet(repeats: int) -> tuple[float, float]:
    """(forward, forward + backward) seconds of the released MM-UNet, batch 1, fp32, random weights."""
    torch.manual_seed(0)
    model = build_model("mm-unet").eval()
    frames, channels, height, width = model.config.video_size
    video = torch.randn(1, frames, channels, height, width)
    audio = torch.randn(1, *model.config.audio_size)
    t = torch.tensor([500])
    shift = 0
    model.requires_grad_(False)  # guidance differentiates the input, not the weights

    def forward():
        with torch.no_grad():
            model(video, audio, t, shift=shift)

    def forward_backward():
        generated = audio.clone().requires_grad_(True)  # video-to-audio: the gradient to the generated audio
        v, a = model(video, generated, t, shift=shift)
        torch.autograd.grad((v.square().mean() + a.square().mean()), [generated])

    return _median_seconds(forward, repeats), _median_seconds(forward_backward, repeats)


def time_released_sr(repeats: int) -> float:
    """Seconds of one released 64→256 upsampler forward on one frame, fp32."""
    torch.manual_seed(0)
    model = build_model("sr-unet").eval()
    x, low = torch.randn(1, 3, 256, 256), torch.randn(1, 3, 64, 64)

    def forward():
        with torch.no_grad():
            model(x, torch.tensor([500]), low)

    return _median_seconds(forward, repeats)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each pass after one warm-up")
    p.add_argument("--sr", action="store_true", help="also time the released upsampler")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    counted = {label: (config, count_calls(config, conditional)) for label, (config, conditional) in settings().items()}
    forward, forward_backward = time_released_mmunet(a.repeats)
    print(f"## sampling_cost: released MM-UNet (133.7 M parameters), batch 1, fp32, {torch.get_num_threads()} threads\n")
    print(f"one forward: {forward:.2f} s; one forward + backward: {forward_backward:.2f} s "
          f"(median of {a.repeats} after a warm-up; random weights)\n")
    paper_conditional = None
    rows = []
    for label, (config, calls) in counted.items():
        seconds = calls.forward * forward + calls.backward * forward_backward
        if label.startswith("paper, video-to-audio"):
            paper_conditional = seconds
        rows.append((label, config, calls, seconds))
    print("| setting | sampler | steps | guidance | model calls per window (with backward) | seconds per window "
          "| cheaper than the paper's video-to-audio |")
    print("|---|---|---|---|---|---|---|")
    for label, config, calls, seconds in rows:
        guidance = config.guidance if "video-to-audio" in label else "–"
        ratio = f"{paper_conditional / seconds:.0f}×" if paper_conditional else "–"
        print(f"| {label} | {config.sampler} | {config.steps} | {guidance} | {calls.forward + calls.backward} "
              f"({calls.backward}) | {seconds:,.0f} ({_duration(seconds)}) | {ratio} |")
    if a.sr:
        sr = time_released_sr(a.repeats)
        per_window = sr * 16 * 25
        print(f"\nreleased 64→256 upsampler (311 M parameters): {sr:.2f} s per frame and step; "
              f"`--upscale` adds 16 frames × 25 steps = {per_window:,.0f} s ({_duration(per_window)}) per window")


if __name__ == "__main__":
    main()
