"""Our schedule is the official one bit for bit, and our samplers on the tiny official models reproduce the
official runs: DDIM-10 (final, halfway, unclipped), the paper's DPM-Solver-20, and the SR model's DDIM-5 with
its learned-range schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OFFICIAL, official_json
from safetensors.torch import load_file

from mmgen.diffusion import (
    Schedule,
    linear_betas,
    mmunet_denoiser,
    sample_ddim,
    sample_paper_dpm_solver,
    schedule_for,
    space_timesteps,
    srunet_denoiser,
)
from mmgen.models import build_model, config_for

# Constructor arguments of the official classes that our configs fix (or that only select code paths).
FIXED_KWARGS = {
    "video_type", "audio_type", "num_classes", "use_checkpoint", "use_fp16", "num_heads_upsample",
    "resblock_updown", "conv_resample", "dims", "use_new_attention_order",
}  # fmt: skip


def official_model(arch: str, name: str) -> torch.nn.Module:
    kwargs = official_json(f"{name}.json")["constructor_kwargs"]
    config = config_for(arch, {k: v for k, v in kwargs.items() if k not in FIXED_KWARGS}, f"{name}.json")
    model = build_model(arch, config)
    model.load_state_dict(load_file(OFFICIAL / f"{name}.safetensors"), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def runs() -> dict[str, torch.Tensor]:
    return load_file(OFFICIAL / "diffusion.safetensors")


@pytest.fixture(scope="module")
def tiny_mm():
    """The tiny official MM-UNet as a recording denoiser: it notes the timesteps it was called with."""
    model = official_model("mm-unet", "tiny_mmunet")
    base = mmunet_denoiser(model)
    calls: list[list[int]] = []

    def denoise(x, t):
        calls.append(t.tolist())
        return base(x, t)

    return denoise, calls


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-3) -> None:
    """Equal to rtol of the expected tensor's largest magnitude (sampler runs amplify float noise)."""
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rtol * scale, f"max error {err:.3g} exceeds {rtol} × {scale:.3g}"


def test_the_schedule_and_every_respaced_timestep_list_are_the_official_ones_exactly(runs):
    # The official linspace(1e-4, 0.02, 1000) in float64, and its ᾱ.
    assert torch.equal(linear_betas(), torch.from_numpy(np.linspace(1e-4, 0.02, 1000, dtype=np.float64)))
    assert torch.equal(torch.cumprod(1.0 - linear_betas(), 0), runs["alphas_cumprod"])
    # The official diffusion object recomputes its betas from ᾱ even without respacing (1 − ᾱ_t/ᾱ_{t−1},
    # which differs from the linspace in the last bits); the fixture stores those.
    full = Schedule.respaced("")
    assert torch.equal(full.betas, runs["betas"]) and torch.equal(full.alphas_cumprod, runs["alphas_cumprod"])
    for spec, key in official_json("tiny_mmunet.json")["diffusion"]["respaced_timesteps_keys"].items():
        assert space_timesteps(1000, spec) == runs[key].tolist(), spec
        assert torch.equal(Schedule.respaced(spec).timesteps, runs[key]), spec
    ddim10 = Schedule.respaced("ddim10")
    assert torch.equal(ddim10.timesteps, runs["ddim10_timestep_map"])
    assert torch.equal(ddim10.alphas_cumprod, runs["ddim10_alphas_cumprod"])


def x_T(runs) -> dict[str, torch.Tensor]:
    return {"video": runs["ddim10_xT_video"], "audio": runs["ddim10_xT_audio"]}


def test_ddim10_reproduces_the_official_run_and_its_halfway_state(runs, tiny_mm):
    denoise, calls = tiny_mm
    calls.clear()
    halfway = {}

    def keep_fifth(info):
        if info["i"] == 4:
            halfway.update(info["x"])

    schedule = Schedule.respaced("ddim10")
    out = sample_ddim(denoise, x_T(runs), schedule, clip_denoised=True, callback=keep_fifth)

    assert calls == [[t, t] for t in range(900, -1, -100)]
    assert calls == runs["ddim10_model_timesteps"].long().tolist()
    for key in ("video", "audio"):
        assert_close_to_scale(out[key], runs[f"ddim10_{key}"])
        assert_close_to_scale(halfway[key], runs[f"ddim10_step5_{key}"])


def test_ddim10_without_clipping_reproduces_the_official_run(runs, tiny_mm):
    denoise, _ = tiny_mm
    out = sample_ddim(denoise, x_T(runs), Schedule.respaced("ddim10"), clip_denoised=False)
    for key in ("video", "audio"):
        assert_close_to_scale(out[key], runs[f"ddim10_noclip_{key}"])


def test_paper_dpm_solver_reproduces_the_official_20_step_run(runs, tiny_mm):
    denoise, calls = tiny_mm
    calls.clear()
    out = sample_paper_dpm_solver(denoise, x_T(runs), schedule_for("paper", 20), steps=20)

    assert calls == runs["dpm20_model_timesteps"].long().tolist()
    assert [c[0] for c in calls] == official_json("tiny_mmunet.json")["diffusion"]["dpm20"]["model_timesteps"]
    for key in ("video", "audio"):
        assert_close_to_scale(out[key], runs[f"dpm20_{key}"])


def test_sr_ddim5_with_the_learned_range_model_reproduces_the_official_run():
    io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    denoise = srunet_denoiser(official_model("sr-unet", "tiny_sr"), io["low_res"])
    schedule = Schedule.respaced("ddim5")
    assert schedule.timesteps.tolist() == official_json("tiny_sr.json")["io"]["ddim5_timesteps"]

    out = sample_ddim(denoise, {"image": io["ddim5_noise"]}, schedule, clip_denoised=True)
    assert_close_to_scale(out["image"], io["ddim5_sample"])
