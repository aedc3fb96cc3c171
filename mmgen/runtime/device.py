"""Where and in what precision a pipeline runs: `--device auto` picks cuda > mps > cpu, `--precision auto`
picks fp32 on CPU, bf16 (else fp16) on CUDA and fp16 on MPS. Weights stay fp32; lower precision is autocast."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch

from mmgen.errors import UsageError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Compute:
    """A device and the dtype matmuls/convolutions run in there (float32 = no autocast)."""

    device: torch.device
    dtype: torch.dtype

    @property
    def precision(self) -> str:
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the model's forward; a no-op in fp32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        """e.g. "cuda:0 (NVIDIA H100, bf16)" — for the sidecar and the terminal."""
        name = self.device.type
        if self.device.type == "cuda":
            index = self.device.index or 0
            name = f"cuda:{index} ({torch.cuda.get_device_name(index)}, {self.precision})"
        else:
            name = f"{name} ({self.precision})"
        return name


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> torch.device:
    """Parse --device and check the device exists here (UsageError naming what is missing)."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise UsageError("--device mps: Apple MPS is not available on this machine", "try --device auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UsageError(f"--device: {name!r} is not a device (choose from {', '.join(DEVICES)})")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available", "try --device auto or --device cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) found")
    return torch.device("cuda", index)


def select_precision(device: torch.device, name: str = "auto") -> torch.dtype:
    """Parse --precision for `device`. bf16 keeps fp32's range (no overflow in attention logits), so
    it is preferred over fp16 on CUDA wherever the GPU supports it."""
    name = name.strip().lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    if name not in PRECISIONS:
        raise UsageError(f"--precision: {name!r} is not one of auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def select_compute(device: str = "auto", precision: str = "auto") -> Compute:
    """Both choices at once, validated before any model is loaded."""
    chosen = select_device(device)
    return Compute(chosen, select_precision(chosen, precision))
