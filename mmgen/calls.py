"""One call of mmgen's work — a pipeline function a program calls, or a command (cli.run enters the same two
blocks) — is what two promises hold over: each note is said once in it (media.notes.one_call), and every output
folder stays the one it found (output_folders.same_folders). A call made inside another is part of it: a batch's jobs, a
command's pipeline call. A pipeline call also gives its caller's thread back torch's state as it found it
(torch_state, put_back_torch_state), however it ends."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from mmgen.media.notes import one_call
from mmgen.output_folders import same_folders

P = ParamSpec("P")
R = TypeVar("R")

# torch's state in a thread that never changed it: grad mode on, no function mode (no `with torch.device`), no
# default device
_TORCH_UNTOUCHED = (True, (), None, None)


def torch_state() -> tuple:
    """The calling thread's torch state that a `with` block of mmgen's may change (torch.no_grad,
    torch.enable_grad, torch.device; mmgen never enters inference mode or sets a default device): its grad mode,
    its function-mode stack, and the default device a `with torch.device` keeps (torch.utils._device's
    CURRENT_DEVICE) and torch.set_default_device's. Before torch is loaded, its untouched state: taking it
    imports nothing."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "_GLOBAL_DEVICE_CONTEXT"):  # not loaded, or still loading
        return _TORCH_UNTOUCHED
    from torch.overrides import _get_current_function_mode_stack
    device = sys.modules.get("torch.utils._device")
    return (torch.is_grad_enabled(), tuple(_get_current_function_mode_stack()),
            None if device is None else device.CURRENT_DEVICE,
            getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None))


def put_back_torch_state(state: tuple) -> None:
    """Give the calling thread back `state` (torch_state's) where it differs: a Ctrl-C that lands between a
    `with` block's __enter__ switching grad mode or pushing a device mode and the block's start (a window
    CPython's `with` has) leaves them changed, with no __exit__ to come — and tensors made on the meta device in
    every later call. Only what the call left changed is touched; without torch loaded, nothing."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "_GLOBAL_DEVICE_CONTEXT"):
        return
    grad, modes, current_device, device_context = state
    if torch.is_grad_enabled() != grad:
        torch._C._set_grad_enabled(grad)
    from torch.overrides import _get_current_function_mode_stack, _pop_mode, _push_mode
    now = _get_current_function_mode_stack()
    if len(now) != len(modes) or any(a is not b for a, b in zip(now, modes, strict=True)):
        kept = next((i for i, (a, b) in enumerate(zip(now, modes, strict=False)) if a is not b),
                    min(len(now), len(modes)))
        for _ in range(len(now) - kept):  # the modes pushed in the call (or above one it took off)
            _pop_mode()
        for mode in modes[kept:]:
            _push_mode(mode)
        device = sys.modules.get("torch.utils._device")
        if device is not None:
            device.CURRENT_DEVICE = current_device
    if getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None) is not device_context:
        torch._GLOBAL_DEVICE_CONTEXT.device_context = device_context


def pipeline_call(function: Callable[P, R] | None = None, *, going_on_from: Callable[..., set[str]] | None = None
                  ) -> Any:
    """`function`'s every call is one call of mmgen's work: a pipeline function of the Python API's (any thread).
    `going_on_from(*args, **kwargs)`: the notes an earlier call said that this one goes on from (a batch plan's,
    for the run of it)."""
    if function is None:
        return functools.partial(pipeline_call, going_on_from=going_on_from)

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        kept = torch_state()
        try:
            with one_call(None if going_on_from is None else going_on_from(*args, **kwargs)), same_folders():
                return function(*args, **kwargs)
        finally:
            put_back_torch_state(kept)

    return call
