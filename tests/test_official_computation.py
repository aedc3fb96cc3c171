"""The official computation (tests/official_computation.py) reproduces the official outputs, the fast path
equals it — in its outputs and, for training, in its gradients — and leaving it puts the fast path back."""

from __future__ import annotations

import pytest
import torch
from conftest import OFFICIAL
from official_computation import OFFICIAL_FORWARD, official_computation, official_sr_computation
from safetensors.torch import load_file
from test_mmunet import micro_inputs, micro_model, tiny_model
from test_srunet import load_tiny

from mmgen.adapters.lora import attach
from mmgen.adapters.spec import LoraSpec
from mmgen.models import mm_layers
from mmgen.models.layers import GroupNorm32


@pytest.fixture(scope="module")
def expected():
    return {
        **load_file(OFFICIAL / "tiny_mmunet_io.safetensors"),
        **load_file(OFFICIAL / "tiny_mmunet_io_shift.safetensors"),
    }


@pytest.mark.parametrize("shift, suffix", [(None, ""), (3, "_shift_const")], ids=["no shift", "shift 3"])
def test_reproduces_the_official_outputs(official_weights, expected, shift, suffix):
    model = tiny_model(official_weights, cross_attention_shift=shift is not None)
    with torch.no_grad(), official_computation(model):
        video, audio = model(expected["video"], expected["audio"], expected["timesteps"], shift=shift)
    torch.testing.assert_close(video, expected[f"video_out{suffix}"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, expected[f"audio_out{suffix}"], atol=1e-4, rtol=1e-4)


def test_the_fast_path_equals_the_official_computation_and_returns_after_it():
    model = micro_model()  # random weights, 4 frames, down- and up-sampling, RS-MMA windows 1 and 3
    inputs = micro_inputs()
    shifts = [3, 1, 0, 1, 2, 3]  # windows 1, 3, 3, 3, 1, 1; most wrap around the clip's end
    video_ops = {direction: dict(ops) for direction, ops in mm_layers.RESAMPLE.items()}
    with torch.no_grad():
        fast = model(*inputs, shift=shifts)
        with official_computation(model):
            official = model(*inputs, shift=shifts)
            swapped = [m for m in model.modules() if "forward" in vars(m) or "attention" in vars(m)]
        after = model(*inputs, shift=shifts)

    for got, want in zip(fast, official, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # every module mmgen computes its own way was swapped, and is back to its class's methods
    assert {type(m) for m in swapped} == {*OFFICIAL_FORWARD, mm_layers.SelfAttention}
    assert not [m for m in model.modules() if "forward" in vars(m) or "attention" in vars(m)]
    assert mm_layers.RESAMPLE == video_ops
    assert all(torch.equal(a, b) for a, b in zip(fast, after, strict=True))


def test_the_official_sr_computation_reproduces_the_fixture_and_the_fast_path_equals_it():
    """benchmarks/forward.py's SR baseline: the official way of computing the SR U-Net, proven on the fixture."""
    sr = load_tiny()
    io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    inputs = (io["x"], io["timesteps"], io["low_res"])
    with torch.no_grad():
        fast = sr(*inputs)
        with official_sr_computation(sr):
            official = sr(*inputs)
            assert all("forward" in vars(m) for m in sr.modules() if isinstance(m, GroupNorm32))
        after = sr(*inputs)
    torch.testing.assert_close(official, io["out"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast, official, atol=1e-4, rtol=1e-4)
    assert not [m for m in sr.modules() if "forward" in vars(m)] and sr.frames_per_call is None
    assert torch.equal(fast, after)


@pytest.mark.parametrize("lora", [False, True], ids=["full fine-tune", "lora on convs"])
def test_one_sample_trains_with_the_gradients_of_the_official_computation(lora):
    """Batch 1 is where the fast path differs most (the timestep's modulation folded into the norm; torch's
    fallback convolution for small inputs, which once failed on the frame conv's weight view: "slow_conv2d:
    grad_weight must be contiguous"). Its gradients must be the official computation's, for every weight a full
    fine-tune trains and for every adapter a LoRA run on the convolutions trains."""
    model = micro_model().train()
    if lora:
        attach(model, LoraSpec(rank=2, alpha=2.0, targets="attention+conv"))
        with torch.no_grad():  # B starts at zero; drawn, every adapter's A and B get a gradient
            for name, p in model.named_parameters():
                if name.endswith("lora_B"):
                    p.normal_(0.0, 0.05)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    video, audio, _ = micro_inputs(batch=1)
    timesteps = torch.tensor([400])

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        out_video, out_audio = model(video, audio, timesteps, shift=[1, 0, 2, 1, 0, 3])
        (out_video.square().mean() + out_audio.square().mean()).backward()
        return {name: p.grad for name, p in trained.items()}

    fast = gradients()
    with official_computation(model):
        official = gradients()
    assert any("video_conv_temporal" in name for name in trained)  # the frame conv trains (its weight or adapter)
    for name, grad in fast.items():
        assert grad is not None and official[name] is not None, name
        torch.testing.assert_close(grad, official[name], atol=1e-5, rtol=1e-4, msg=name)
