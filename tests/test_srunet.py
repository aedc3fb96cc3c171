"""The SR U-Net is the official ImageSuperResModel: same keys, same parameter count, same outputs."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from conftest import OFFICIAL, official_json
from safetensors.torch import load_file

from mmgen.models import SRUNetConfig, build_model
from mmgen.models.attention_ops import qkv_attention
from mmgen.models.srunet import SRUNet

# The official key list, copied from the shared spec (566 lines, `key [shape]`).
SR_KEYS = Path(__file__).parent / "fixtures" / "spec" / "official-sr-keys.txt"


def tiny_config() -> SRUNetConfig:
    """The official constructor kwargs of the tiny fixture, mapped onto our config."""
    kw = official_json("tiny_sr.json")["constructor_kwargs"]
    # What our architecture hard-wires must be what the fixture used.
    assert (kw["dims"], kw["num_classes"], kw["use_fp16"]) == (2, None, False)
    assert kw["resblock_updown"] and not kw["use_new_attention_order"]
    return SRUNetConfig(
        image_size=kw["image_size"],
        in_channels=kw["in_channels"],
        model_channels=kw["model_channels"],
        out_channels=kw["out_channels"],
        num_res_blocks=kw["num_res_blocks"],
        channel_mult=tuple(kw["channel_mult"]),
        attention_resolutions=tuple(kw["attention_resolutions"]),  # already ds values
        num_heads=kw["num_heads"],
        num_head_channels=kw["num_head_channels"],
        num_heads_upsample=kw["num_heads_upsample"],
        dropout=kw["dropout"],
        use_scale_shift_norm=kw["use_scale_shift_norm"],
    )


def official_key_shapes() -> dict[str, list[int]]:
    shapes = {}
    for line in SR_KEYS.read_text().splitlines():
        key, shape = line.split(" ", 1)
        shapes[key] = [int(s) for s in shape.strip("[]").split(",")]
    return shapes


def test_released_architecture_has_the_official_keys_shapes_and_size():
    model = build_model("sr-unet", device="meta")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = official_key_shapes()
    assert list(ours) == list(official)  # same names, same order
    assert ours == official
    assert sum(p.numel() for p in model.parameters()) == 311_027_910


def load_tiny() -> SRUNet:
    model = build_model("sr-unet", tiny_config())
    model.load_state_dict(load_file(OFFICIAL / "tiny_sr.safetensors"), strict=True)
    return model.eval()


def test_tiny_official_weights_load_strictly_and_reproduce_the_official_output():
    model = load_tiny()
    assert sum(p.numel() for p in model.parameters()) == official_json("tiny_sr.json")["num_parameters"]
    io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    with torch.no_grad():
        out = model(io["x"], io["timesteps"], low_res=io["low_res"])
    assert out.shape == (2, 6, 32, 32)
    torch.testing.assert_close(out, io["out"], atol=1e-4, rtol=1e-4)


def test_runs_under_bf16_autocast_close_to_fp32():
    model = load_tiny()
    io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(io["x"], io["timesteps"], low_res=io["low_res"])
    assert out.dtype == torch.bfloat16
    error = (out.float() - io["out"]).abs().max().item()
    assert error < 0.05 * io["out"].abs().max().item()


def reference_legacy_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Written out by hand: per head, the channel block [q | k | v]; softmax(qᵀk / sqrt(ch)) over keys."""
    batch, width, length = qkv.shape
    ch = width // (3 * heads)
    per_head = qkv.reshape(batch, heads, 3, ch, length)
    q, k, v = per_head[:, :, 0], per_head[:, :, 1], per_head[:, :, 2]  # (B, h, ch, T)
    weights = torch.einsum("bhct,bhcs->bhts", q, k) / math.sqrt(ch)
    weights = weights.float().softmax(dim=-1)
    out = torch.einsum("bhts,bhcs->bhct", weights, v)  # (B, h, ch, T)
    return out.reshape(batch, heads * ch, length)


def test_legacy_order_attention_equals_explicit_softmax_reference():
    qkv = torch.randn(2, 3 * 4 * 8, 37)  # 4 heads of 8 channels, 37 tokens
    ours = qkv_attention(qkv, num_heads=4, legacy_order=True)
    torch.testing.assert_close(ours, reference_legacy_attention(qkv, 4), atol=1e-5, rtol=1e-5)
    # The head split matters: the other channel order gives a different answer on the same input.
    assert not torch.allclose(qkv_attention(qkv, num_heads=4, legacy_order=False), ours, atol=1e-3)


def gradients(model: SRUNet, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(*inputs).square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_gradient_checkpointing_recomputes_blocks_and_gives_identical_gradients():
    model = load_tiny().train()
    io = load_file(OFFICIAL / "tiny_sr_io.safetensors")
    inputs = (io["x"], io["timesteps"], io["low_res"])
    calls = []
    model.input_blocks[1].register_forward_pre_hook(lambda *_: calls.append(1))

    plain = gradients(model, inputs)
    assert len(calls) == 1
    model.gradient_checkpointing = True
    calls.clear()
    checkpointed = gradients(model, inputs)
    assert len(calls) == 2  # forward, then recomputed in backward

    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=0, rtol=0, msg=name)
    assert any(g.abs().sum() > 0 for g in plain.values())
