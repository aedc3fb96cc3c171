"""LoRA adapters on an mm-unet: an adapter file applied to its base equals the model it was trained into, two
adapters stack linearly, and a file that does not belong to the model (or was changed) is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_model import tiny_config, tiny_mmunet

from mmgen.adapters import (
    AdapterUse,
    BaseModel,
    LoraSpec,
    adapter_parameters,
    attach,
    check_fits,
    merge_adapters,
    read_adapter,
    save_adapter,
    target_modules,
)
from mmgen.errors import ChecksumMismatch, UsageError
from mmgen.models import build_model

BASE_SHA = "b" * 64


def base_identity() -> BaseModel:
    return BaseModel("tiny", BASE_SHA, "mm-unet", dataclasses.asdict(tiny_config()))


def model_as(name: str, sha256: str = BASE_SHA, arch: str = "mm-unet") -> BaseModel:
    """What check_fits is told about the model an adapter is applied to."""
    return BaseModel(name, sha256, arch, dataclasses.asdict(tiny_config()))


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    config = tiny_config()
    video = torch.randn(1, *config.video_size, generator=g)
    audio = torch.randn(1, *config.audio_size, generator=g)
    return video, audio, torch.tensor([500])


def forward(model, seed: int = 0):
    with torch.no_grad():
        return model(*inputs(seed), shift=1)


def trained_adapter(model, seed: int) -> None:
    """Stand in for training: give every adapter tensor random values (B starts at zero, a no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in adapter_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def close(a, b, tol=1e-5):
    return all((x - y).abs().max() <= tol * max(1.0, x.abs().max().item()) for x, y in zip(a, b, strict=True))


def write_adapter(tmp_path, name: str, seed: int, spec=LoraSpec(4, 4.0, "attention+conv")):
    model = tiny_mmunet()
    attach(model, spec)
    trained_adapter(model, seed)
    path = tmp_path / f"{name}.safetensors"
    save_adapter(path, model, spec, base_identity())
    return model, path


def test_a_new_adapter_changes_nothing_and_only_adapters_train():
    model = tiny_mmunet()
    before = forward(model)
    params = attach(model, LoraSpec(4, 4.0, "all"))
    assert close(forward(model), before, 0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in params}


@pytest.mark.parametrize("targets", ["attention", "all"])
def test_a_rank_above_every_adapted_layers_width_is_refused_before_any_adapter_is_made(targets):
    """`--lora 1000000` once allocated 22 GB and got killed: a rank above min(fan-in, fan-out) of the widest
    adapted layer adds nothing. The bound is that widest layer's, so `all` (a 1-channel audio output) still
    takes the same ranks as `attention`; at the bound the adapters attach."""
    model = tiny_mmunet()
    widest = max(min(m.weight.shape[0], m.weight[0].numel()) for m in target_modules(model, targets).values())
    with pytest.raises(UsageError, match=rf"^lora_rank {widest + 1} is more than the largest useful rank {widest} "):
        attach(model, LoraSpec(widest + 1, 1.0, targets))
    assert not any(p.requires_grad is False for p in model.parameters())  # untouched: nothing frozen or attached
    assert attach(model, LoraSpec(widest, 1.0, targets))


def test_base_plus_adapter_file_equals_the_model_it_was_trained_into(tmp_path):
    adapted, path = write_adapter(tmp_path, "style", seed=1)
    expected = forward(adapted)  # the parametrized model, as training sees it
    assert not close(expected, forward(tiny_mmunet()), 1e-3)  # the adapter does something

    fresh = tiny_mmunet()
    adapter = read_adapter(path)
    check_fits(adapter, fresh, "tiny", model_as("tiny"))
    merge_adapters(fresh, [(adapter, 1.0)])
    assert close(forward(fresh), expected)


def test_two_adapters_at_half_weight_equal_the_average_of_the_merged_models(tmp_path):
    _, first = write_adapter(tmp_path, "first", seed=1)
    _, second = write_adapter(tmp_path, "second", seed=2)
    merged = []
    for path in (first, second):
        model = tiny_mmunet()
        merge_adapters(model, [(read_adapter(path), 1.0)])
        merged.append(model.state_dict())
    average = build_model("mm-unet", tiny_config()).eval()
    average.load_state_dict({k: (merged[0][k] + merged[1][k]) / 2 for k in merged[0]})

    stacked = tiny_mmunet()
    merge_adapters(stacked, [(read_adapter(first), 0.5), (read_adapter(second), 0.5)])
    assert close(forward(stacked), forward(average))


def test_an_adapter_file_that_was_changed_is_refused(tmp_path):
    _, path = write_adapter(tmp_path, "style", seed=1)
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x01  # one bit of the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="changed or damaged"):
        read_adapter(path)


def test_an_adapter_for_other_weights_names_both_models(tmp_path):
    _, path = write_adapter(tmp_path, "style", seed=1)
    with pytest.raises(UsageError, match=r"trained on tiny \(sha256 bbbbbbbbbbbb….*not on demo \(sha256 cccc"):
        check_fits(read_adapter(path), tiny_mmunet(), "demo", model_as("demo", "c" * 64))
    with pytest.raises(UsageError, match="is for an mm-unet model; up is an sr-unet"):
        check_fits(read_adapter(path), tiny_mmunet(), "up", model_as("up", arch="sr-unet"))


def test_an_adapter_for_another_shape_of_model_is_refused(tmp_path):
    _, path = write_adapter(tmp_path, "style", seed=1)
    wider = build_model("mm-unet", dataclasses.replace(tiny_config(), model_channels=64))
    with pytest.raises(UsageError, match="does not fit"):
        check_fits(read_adapter(path), wider, "tiny", model_as("tiny"))


def test_a_file_that_is_not_an_adapter_is_one_clear_error(tmp_path):
    path = tmp_path / "model.safetensors"
    from tiny_model import save_tiny_model

    save_tiny_model(path)
    with pytest.raises(UsageError, match="is not an mmgen adapter"):
        read_adapter(path)


@pytest.mark.parametrize(
    ("text", "source", "weight"),
    [("style.safetensors", "style.safetensors", 1.0), ("style.safetensors:0.5", "style.safetensors", 0.5),
     ("my-style:-1", "my-style", -1.0), ("C:/a:b.safetensors", "C:/a:b.safetensors", 1.0)],
)
def test_adapter_options_parse_file_and_weight(text, source, weight):
    assert AdapterUse.parse(text) == AdapterUse(source, weight)


@pytest.mark.parametrize("text", ["style.safetensors:1e38", "style.safetensors:-101", "style.safetensors:inf"])
def test_an_absurd_adapter_weight_is_refused_before_it_can_overflow(text):
    with pytest.raises(UsageError) as refused:
        AdapterUse.parse(text)
    assert refused.value.message == f"adapter {text}: the weight must be a number from -100 to 100"
    assert AdapterUse.parse("style.safetensors:-100").weight == -100.0


def test_nan_from_a_run_with_adapters_points_at_their_weights():
    from types import SimpleNamespace

    from mmgen.diffusion import SamplingConfig
    from mmgen.pipelines.sampling import finite
    from mmgen.pipelines.session import Run
    from mmgen.runtime.device import Compute

    nan = {"video": torch.tensor([float("nan")]), "audio": torch.zeros(1)}
    cpu = Compute(torch.device("cpu"), torch.float32)
    adapted = Run("tiny", cpu, SamplingConfig(), 0, None, (AdapterUse.parse("style.safetensors:50"),))
    with pytest.raises(Exception, match=r"the model overflowed \(check the adapter weights \(style.safetensors:50\)\)$"):
        finite(nan, adapted, SimpleNamespace(name="tiny"))
    bf16 = Run("tiny", Compute(torch.device("cpu"), torch.bfloat16), SamplingConfig(), 0, None)
    with pytest.raises(Exception, match=r"overflowed \(try --precision fp32\)$"):
        finite(nan, bf16, SimpleNamespace(name="tiny"))


def test_rank_8_adapters_hold_under_5_percent_of_the_released_model():
    model = build_model("mm-unet", None, device="meta")
    total = sum(p.numel() for p in model.parameters())
    for targets in ("attention", "attention+conv", "all"):
        fresh = build_model("mm-unet", None, device="meta")
        share = sum(p.numel() for p in attach(fresh, LoraSpec(8, 8.0, targets))) / total
        assert share <= 0.05, (targets, share)
    attention = target_modules(build_model("mm-unet", None, device="meta"), "attention")
    assert any(name.endswith("v_qkv") for name in attention)  # RS-MMA is adapted, not only self-attention
    assert not any("in_layers" in name for name in attention)
