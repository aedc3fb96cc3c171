"""The precision of fp32 matrix products is one process-wide torch setting: a caller's
torch.set_float32_matmul_precision("medium") made mmgen's fp32 work bf16 on a CPU that has it (TF32 on CUDA) while
its records said fp32. Each call does its fp32 products in full fp32 (torch's default) and gives the caller's setting
back after; of calls running at once in several threads, the last to end gives it back. Convolutions keep torch's
own setting (TF32 on CUDA by default, as in every fp32 run)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from mmgen.runtime.torch_state import loaded_torch

_lock = threading.Lock()
_calls = 0  # calls running with mmgen's own precision
_callers: list = []  # the caller's setting while they do


def _settings(torch) -> list:
    """Where the setting lives: torch ≥ 2.9 reads each backend's own (the legacy getter can be stale), older torch
    one process-wide value. (holder, attribute, mmgen's value) each."""
    backends = torch.backends
    if hasattr(getattr(backends.mkldnn, "matmul", None), "fp32_precision"):
        return [(backends.mkldnn.matmul, "fp32_precision", "ieee"), (backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(torch, "float32_matmul_precision", "highest")]


def _get(torch, holder, attribute):
    return torch.get_float32_matmul_precision() if holder is torch else getattr(holder, attribute)


def _set(torch, holder, attribute, value) -> None:
    if holder is torch:
        torch.set_float32_matmul_precision(value)
    else:
        setattr(holder, attribute, value)


@contextmanager
def own_matmul_precision() -> Iterator[None]:
    """Full fp32 matrix products while the block runs, the caller's setting back after. Without torch loaded the
    caller set nothing: nothing to do (torch loading inside the block starts at its default, full fp32)."""
    global _calls
    torch = loaded_torch()
    if torch is None:
        yield
        return
    with _lock:
        if not _calls:
            _callers[:] = [(holder, attribute, _get(torch, holder, attribute))
                           for holder, attribute, _ in _settings(torch)]
            for holder, attribute, own in _settings(torch):
                if _get(torch, holder, attribute) != own:
                    _set(torch, holder, attribute, own)
        _calls += 1
    try:
        yield
    finally:
        with _lock:
            _calls -= 1
            if not _calls:
                for holder, attribute, value in _callers:
                    if _get(torch, holder, attribute) != value:
                        _set(torch, holder, attribute, value)
