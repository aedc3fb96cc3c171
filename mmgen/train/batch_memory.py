"""The memory one clip of a training batch takes, from the model's config alone (no torch): its float32 samples,
and the activations a whole-model step keeps for the backward pass, which grow with the batch. Asked before torch
loads (train.run_checks), so that a batch this machine could never hold is refused at once, not by the kernel's
OOM killer after minutes of decoding and allocating (`--batch-size 4000` of the demo model: killed at ~24 GB).

The activations are estimated as bytes per feature value: the mm-unet's feature maps summed over its levels (each
level halves the video's height and width and quarters the audio's length, and widens the channels by its
channel_mult), times the blocks a level runs its features through (num_res_blocks + 1, as the decoder does).
Measured with benchmarks/training_memory.py (2026-12-03, CPU, one thread): the peak-RSS growth of one step
(forward, ε-MSE, backward) at batch 2 and at batch 10, in a fresh process each, per clip of the difference, in
bytes per feature value (two runs differed by up to 3 B):

    config (feature values per clip)                      fp32   fp32 --recompute   bf16   bf16 --recompute
    tests' tiny model: 2×8×8 + 1,600 (165,888)            129    71                 36     24 (21 in the other)
    demo: 8×16×16 + 6,400 (878,592)                       127    60                 61     24
    64 channels, 3 blocks: 4×32×32 + 3,200 (2,276,352)    118    41                 64     21

The constants below lie under the least of these (bf16 is the least any precision keeps), so the estimate stays under
what a run takes and a batch that fits is never refused for it; train.run_checks also refuses only an estimate
clearly past the memory there is. A LoRA run keeps fewer activations (its base's weights take no gradients) and is
not estimated here; neither is a run on a CUDA or ROCm device, whose activations lie in the device's memory."""

from __future__ import annotations

import math
import os
from typing import Any

WHOLE_MODEL_BYTES_PER_VALUE = 32
RECOMPUTED_BYTES_PER_VALUE = 20  # --recompute: only each block's inputs are kept, its insides recomputed


def clip_bytes(model_config: Any) -> int:
    """One clip's video and audio as the batch collates them (float32)."""
    return 4 * (math.prod(model_config.video_size) + math.prod(model_config.audio_size))


def feature_values(model_config: Any) -> int:
    """The feature values of one clip summed over the U-Net's levels and the blocks each runs (see above)."""
    frames, _, height, width = model_config.video_size
    length = model_config.audio_size[-1]
    per_level = sum(mult * (frames * height * width // 4**level + length // 4**level)
                    for level, mult in enumerate(model_config.channel_mult))
    return model_config.model_channels * (model_config.num_res_blocks + 1) * per_level


def activation_bytes(model_config: Any, recompute: bool) -> int:
    """The activations a whole-model training step keeps per clip for its backward pass (see the table above)."""
    return feature_values(model_config) * (RECOMPUTED_BYTES_PER_VALUE if recompute else WHOLE_MODEL_BYTES_PER_VALUE)


def trains_in_ram(device: str) -> bool:
    """Whether a run on `device` (a checked device name) keeps its activations in this machine's RAM: on the CPU,
    and on Apple's MPS (its memory is the RAM); with `auto`, where no CUDA or ROCm device node is here, which torch
    (not loaded yet) would find. A node that is there but hidden (CUDA_VISIBLE_DEVICES) counts as a GPU: the
    check then counts less, never more."""
    if device in ("cpu", "mps"):
        return True
    if device != "auto":
        return False
    try:
        nodes = os.listdir("/dev")
    except OSError:
        return False
    return not any(name.startswith("nvidia") or name == "kfd" for name in nodes)
