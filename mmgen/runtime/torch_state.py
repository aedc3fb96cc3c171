"""torch's thread-local state that a `with` block may change — grad mode and the function-mode stack that a
`with torch.device` pushes on — taken and given back whole, so that a Ctrl-C landing at any bytecode of such a
block (between its __enter__ and its body, where no __exit__ follows; or inside torch's own
`_pop_mode_temporarily`, which leaves a mode off the stack) leaves no trace. Taking it imports nothing: before torch
is loaded, its state is the untouched one."""

from __future__ import annotations

import sys

# torch's state in a thread that never changed it: grad mode on, no function mode (no `with torch.device`), no
# default device
_UNTOUCHED = (True, (), None, None)


def _loaded():
    torch = sys.modules.get("torch")
    return None if torch is None or not hasattr(torch, "_GLOBAL_DEVICE_CONTEXT") else torch  # not loaded, or loading


def function_modes() -> tuple:
    """The calling thread's torch function-mode stack, bottom first (() before torch is loaded)."""
    if _loaded() is None:
        return ()
    from torch.overrides import _get_current_function_mode_stack
    return tuple(_get_current_function_mode_stack())


def put_back_function_modes(modes: tuple) -> bool:
    """Make the calling thread's function-mode stack `modes` (function_modes'): pop what is above the part they
    share, push back what is missing. Whether it had changed."""
    if _loaded() is None:
        return False
    from torch.overrides import _get_current_function_mode_stack, _pop_mode, _push_mode
    now = _get_current_function_mode_stack()
    if len(now) == len(modes) and all(a is b for a, b in zip(now, modes, strict=True)):
        return False
    shared = next((i for i, (a, b) in enumerate(zip(now, modes, strict=False)) if a is not b),
                  min(len(now), len(modes)))
    for _ in range(len(now) - shared):
        _pop_mode()
    for mode in modes[shared:]:
        _push_mode(mode)
    return True


def torch_state() -> tuple:
    """The calling thread's grad mode, function-mode stack, the default device a `with torch.device` keeps
    (torch.utils._device's CURRENT_DEVICE) and torch.set_default_device's. mmgen never enters inference mode or
    sets a default device, so it has none of theirs to give back."""
    torch = _loaded()
    if torch is None:
        return _UNTOUCHED
    device = sys.modules.get("torch.utils._device")
    return (torch.is_grad_enabled(), function_modes(), None if device is None else device.CURRENT_DEVICE,
            getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None))


def put_back_torch_state(state: tuple) -> None:
    """Give the calling thread back `state` (torch_state's) where it differs; without torch loaded, nothing."""
    torch = _loaded()
    if torch is None:
        return
    grad, modes, current_device, device_context = state
    if torch.is_grad_enabled() != grad:
        torch._C._set_grad_enabled(grad)
    if put_back_function_modes(modes) and (device := sys.modules.get("torch.utils._device")) is not None:
        device.CURRENT_DEVICE = current_device  # a module global: touched only when this thread's stack was wrong
    if getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None) is not device_context:
        torch._GLOBAL_DEVICE_CONTEXT.device_context = device_context


class on_device:
    """`with on_device(device):` what `with torch.device(device):` does — tensors made without a device= are made
    on `device` — but its exit gives back the stack its entry found, where torch.device's pops one mode: after a
    Ctrl-C inside torch's `_pop_mode_temporarily` took the device's mode off, that pop raised `RuntimeError:
    trying to pop from empty mode stack` in place of the KeyboardInterrupt."""

    def __init__(self, device) -> None:
        from torch.utils._device import DeviceContext
        self.mode = DeviceContext(device)

    def __enter__(self) -> None:
        from torch.overrides import _push_mode
        self.below = function_modes()
        _push_mode(self.mode)

    def __exit__(self, *exc) -> None:
        put_back_function_modes(self.below)
