"""Using adapters: `--adapter FILE[:WEIGHT]`, checked against the model and merged into its weights.

Several adapters stack linearly: W ← W + Σ weightᵢ · ΔWᵢ, so two adapters at 0.5/0.5 give the average of the
two merged models. Merging once at load time costs nothing per denoising step."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmgen.adapters.file import Adapter, BaseModel
from mmgen.adapters.use import AdapterUse
from mmgen.errors import UsageError


def check_base(adapter: Adapter, name: str, arch: str, sha256: str, identities: set[str]) -> None:
    """Refuse an adapter trained on other weights or another architecture than the model `name` (an `arch` whose
    weights file has `sha256`, and holds the weights of every file in `identities`), naming both sides by the sha256
    `mmgen models list` shows. Weights are the same when the files are, or when one was converted from the other
    (or both from one file) without changing a value: `models import` of the demo as float32 is still the demo.
    Checked before any model loads where the model is on this machine (session.prepare), and as it loads."""
    if adapter.base.arch != arch:
        raise UsageError(f"adapter {adapter.shown} is for an {adapter.base.arch} model; {name} is an {arch} model")
    if not adapter.base.identities() & identities:
        raise UsageError(
            f"adapter {adapter.shown} was trained on {adapter.base.name} (sha256 {adapter.base.sha256[:12]}…), "
            f"not on {name} (sha256 {sha256[:12]}…): other weights",
            hint=f"use it with -m {adapter.base.name}, or train an adapter on {name}",
        )


def check_fits(adapter: Adapter, model: nn.Module, name: str, base: BaseModel) -> None:
    """check_base against the loaded model, then every adapted layer against its weight's shape."""
    check_base(adapter, name, base.arch, base.sha256, base.identities())
    modules = dict(model.named_modules())
    for layer in adapter.layers():
        weight = getattr(modules.get(layer), "weight", None)
        a, b = adapter.tensors[f"{layer}.lora_A"], adapter.tensors[f"{layer}.lora_B"]
        if weight is None or (b.shape[0], a.shape[1]) != (weight.shape[0], math.prod(weight.shape[1:])):
            raise UsageError(f"adapter {adapter.shown}: layer {layer} does not fit {name}'s architecture")


def merge_adapters(model: nn.Module, adapters: list[tuple[Adapter, float]]) -> None:
    """Add each adapter's delta, times its weight, to `model`'s weights in place (after `check_fits`). The
    adapters are read onto the CPU; the model may sit on a GPU, so each delta goes to its weight's device."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for adapter, weight in adapters:
            for layer in adapter.layers():
                w = modules[layer].weight
                w += (weight * adapter.delta(layer)).view(w.shape).to(w.device, w.dtype)


def read_uses(uses: tuple[AdapterUse, ...] | list[AdapterUse]) -> list[tuple[Adapter, float]]:
    """Read and verify every adapter a run names (files or registered names), with its weight."""
    from mmgen.adapters.store import resolve

    return [(resolve(use.source), use.weight) for use in uses]
