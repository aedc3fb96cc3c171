"""A GPU's device check, on a CPU-only machine: inside `OneDevice()`, an operation given tensors on two devices
raises, as CUDA and MPS do (a CPU tensor added to a CUDA one: "Expected all tensors to be on the same device").
The CPU itself and the meta device let such mixes pass silently, so a test puts the model on "meta" (shapes
only, nothing computed) and the check finds the tensor that a GPU run would have left on the CPU.

As on a GPU, a 0-dim CPU tensor (a scalar) may join any device, and copies (`.to`, `copy_`) may cross."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
CROSSING = {aten._to_copy.default, aten.copy_.default, aten.copy.default, aten._copy_from.default,
            aten._copy_from_and_resize.default}  # fmt: skip


class OneDevice(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in CROSSING:
            tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            devices = {str(t.device) for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
            if len(devices) > 1:
                raise RuntimeError(f"{func}: expected all tensors on one device, got {', '.join(sorted(devices))}")
        return func(*args, **kwargs)
