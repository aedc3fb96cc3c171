"""One code path for both modalities: a clip's tensors keyed by modality name ("video", "audio").

Samplers, guidance and pipelines apply the same math to every modality with `each`, so nothing is written
twice for video and audio. A single-modality model (the SR U-Net) is just a one-key dict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

Modal = dict[str, "torch.Tensor"]  # a string: what names modalities should not have to import torch
MODALITIES = ("video", "audio")  # of the coupled model, in the official draw order


def each(fn: Callable[..., Any], *modals: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `fn` key-wise over one or more dicts with the same keys: each(f, a, b)[k] == f(a[k], b[k])."""
    keys = list(modals[0])
    for m in modals[1:]:
        if list(m) != keys:
            raise ValueError(f"modalities differ: {keys} vs {list(m)}")
    return {k: fn(*(m[k] for m in modals)) for k in keys}
