"""Adapters as a user handles them: register one by name, see it in `models list` beside its base, merge it
into a plain model, remove it — and a registered copy that was changed on disk is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from mmgen_cli import mmgen_env, run_mmgen
from tiny_model import save_tiny_model, tiny_config

from mmgen.adapters import (
    BaseModel,
    LoraSpec,
    adapter_parameters,
    attach,
    merge_adapters,
    read_adapter,
    save_adapter,
)
from mmgen.weights import ModelCache, load_model, sha256_file


@pytest.fixture
def adapter_file(tmp_path):
    """A base model file and a rank-4 adapter trained on it (random adapter values stand in for training)."""
    base = save_tiny_model(tmp_path / "base.safetensors")
    model = load_model(base).model
    attach(model, LoraSpec(4, 4.0, "attention"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, p in adapter_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    identity = BaseModel(str(base), sha256_file(base), "mm-unet", dataclasses.asdict(tiny_config()))
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, LoraSpec(4, 4.0, "attention"), identity)
    return base, path


def test_an_adapter_is_registered_listed_merged_and_removed_by_name(adapter_file, tmp_path):
    base, path = adapter_file
    env = mmgen_env(tmp_path)
    registered = run_mmgen("models", "import", path, "--name", "my-style", "--json", env=env)
    assert registered.returncode == 0, registered.stderr
    record = json.loads(registered.stdout)
    assert record["kind"] == "adapter" and record["base"] == str(base) and record["rank"] == 4
    assert record["sha256"] == sha256_file(path)

    listed = run_mmgen("models", "list", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["name"] for r in rows if r.get("kind") == "adapter"] == ["my-style"]
    shown = run_mmgen("models", "list", env=env).stderr
    assert "my-style" in shown and "adapters" in shown

    again = run_mmgen("models", "import", path, "--name", "my-style", env=env)
    assert again.returncode == 2 and "already registered" in again.stderr

    merged = run_mmgen("models", "import", path, "--name", "styled", "--merge", env=env)
    assert merged.returncode == 0, merged.stderr
    expected = load_model(base).model
    merge_adapters(expected, [(read_adapter(path), 1.0)])
    cached = load_model(ModelCache(root=Path(env["MMGEN_CACHE"])).weights_path("styled")).model
    for (name, a), (_, b) in zip(expected.state_dict().items(), cached.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name

    removed = run_mmgen("models", "rm", "my-style", env=env)
    assert removed.returncode == 0, removed.stderr
    listed = run_mmgen("models", "list", "--json", env=env)
    assert not [line for line in listed.stdout.splitlines() if '"kind": "adapter"' in line]


def test_merge_is_for_adapters_only(adapter_file, tmp_path):
    base, _ = adapter_file
    result = run_mmgen("models", "import", base, "--name", "x", "--merge", env=mmgen_env(tmp_path))
    assert result.returncode == 2 and "--merge is for adapters" in result.stderr
