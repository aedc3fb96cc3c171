"""How each weight is kept for inference: its dtype under autocast, and its memory layout.

Autocast rounds the weights and biases of convolutions and linear layers to its dtype at every call, and keeps
a cast copy of each for the whole forward; norms and embeddings it leaves in float32. Keeping exactly those
tensors in the autocast dtype from the start gives bitwise the same outputs with half their memory, and no
copies: for the released MM-UNet on a bf16 CPU, 267 MB instead of 535 MB of fp32 weights plus 267 MB of
copies. Only for inference: training keeps float32 master weights.

Convolution weights are kept channels-last (input channels innermost), the layout oneDNN runs them in beside
channels-last activations: stored as the file has them, torch copies every conv weight into that layout at
every call (35 ms of a 1.9 s bf16 forward of the released MM-UNet), and a convolution with a channels-first
input but a channels-last weight still computes, and hands on, channels-last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

AUTOCAST_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def autocast_tensors(model: nn.Module) -> set[str]:
    """State-dict names of the tensors autocast computes in its dtype: every parameter of a conv or linear."""
    return _parameters_of(model, AUTOCAST_LAYERS)


@dataclass(frozen=True)
class Storage:
    """The dtype and layout each state-dict tensor of a model is kept in to run under autocast `compute`."""

    compute: torch.dtype
    lowered: frozenset[str]
    conv_weights: frozenset[str]

    @classmethod
    def of(cls, model: nn.Module, compute: torch.dtype) -> Storage:
        convs = {name for name in _parameters_of(model, CONV_LAYERS) if name.endswith("weight")}
        return cls(compute, frozenset(autocast_tensors(model)), frozenset(convs))

    def keep(
        self, name: str, tensor: torch.Tensor, device: torch.device | None = None, copy: bool = False
    ) -> torch.Tensor:
        """`tensor` in the dtype and layout kept for `name` (a new tensor if `copy`, else only if needed)."""
        dtype = tensor.dtype
        if tensor.is_floating_point():
            dtype = self.compute if name in self.lowered else torch.float32
        if name not in self.conv_weights:
            return tensor.to(device, dtype, copy=copy)
        return _channels_last(tensor, dtype, device, copy)


def channels_last_weights(model: nn.Module) -> nn.Module:
    """Lay every convolution weight of `model` out channels-last, in place: built, loaded and resumed models
    then all run (and train: a conv's weight gradient is summed in its weight's layout) in one layout."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CONV_LAYERS):
                module.weight.data = _channels_last(module.weight.data)
    return model


def store_for_compute(model: nn.Module, compute: torch.dtype) -> nn.Module:
    """Keep `model`'s weights for inference under `compute`, in place (see Storage)."""
    storage = Storage.of(model, compute)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.data = storage.keep(name, param.data)
    return model


def _parameters_of(model: nn.Module, layers: tuple[type[nn.Module], ...]) -> set[str]:
    return {
        f"{name}.{key}" if name else key
        for name, module in model.named_modules()
        if isinstance(module, layers)
        for key, _ in module.named_parameters(recurse=False)
    }


def _channels_last(
    weight: torch.Tensor, dtype: torch.dtype | None = None, device: torch.device | None = None, copy: bool = False
) -> torch.Tensor:
    """A conv weight (C', C, *kernel) stored as (C', *kernel, C), shape unchanged, in one copy (or none).
    The strides are always exactly those of that layout, size-1 axes included: a built weight that is already
    laid out so (a 1×1 kernel, one input channel) but strided otherwise along a size-1 axis is copied too. Torch
    reads a convolution's layout from the strides, size-1 axes included, and hands its output on in the layout it
    guessed (the audio's first convolution, one input channel, sets the layout of every audio activation after
    it); the weight gradients then sum in another order (on an AVX2 CPU in fp32). A model built from scratch and
    the same weights loaded from a file (or resumed from a checkpoint) must compute, and train, bitwise alike."""
    inner = weight.movedim(1, -1)
    dtype = weight.dtype if dtype is None else dtype
    device = weight.device if device is None else torch.device(device)
    laid_out = weight.stride() == channels_last_strides(weight.shape)
    if not copy and laid_out and inner.dtype == dtype and inner.device == device:
        return weight
    return torch.empty(inner.shape, dtype=dtype, device=device).copy_(inner).movedim(-1, 1)


def channels_last_strides(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a conv weight of `shape` (C', C, *kernel) stored as (C', *kernel, C), as a fresh tensor
    of that layout has them (size-1 axes included)."""
    inner = (shape[0], *shape[2:], shape[1])
    strides, size = [], 1
    for n in reversed(inner):
        strides.append(size)
        size *= max(n, 1)
    strides.reverse()
    return (strides[0], strides[-1], *strides[1:-1])
