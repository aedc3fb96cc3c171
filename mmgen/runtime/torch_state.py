"""torch's thread-local state that a `with` block may change — grad mode, the function-mode stack that a
`with torch.device` pushes on, and autocast's (each device's enabled flag and dtype, its cache flag and nesting
count) — taken and given back whole, so that a Ctrl-C landing at any bytecode of such a
block (between its __enter__ and its body, where no __exit__ follows; or inside torch's own
`_pop_mode_temporarily`, which leaves a mode off the stack) leaves no trace. Taking it imports nothing: before torch
is loaded, its state is the untouched one."""

from __future__ import annotations

import sys

# The devices whose autocast state is taken (those of them this torch has autocast for), and the dtype each
# autocasts to in a thread that never set one (torch's defaults, named: torch need not be loaded to name them)
_AUTOCAST_DEVICES = {"cpu": "bfloat16", "cuda": "float16", "mps": "float16"}

# torch's state in a thread that never changed it: grad mode on, no function mode (no `with torch.device`), no
# default device, autocast off on every device with its default dtype, its cache on and no autocast block entered
_UNTOUCHED = (True, (), None, None, (True, 0, tuple((device, False, dtype) for device, dtype in
                                                      _AUTOCAST_DEVICES.items())))


def loaded_torch():
    """The torch module where it has been imported whole, else None: nothing of the caller's to take or put back."""
    torch = sys.modules.get("torch")
    return None if torch is None or not hasattr(torch, "_GLOBAL_DEVICE_CONTEXT") else torch  # not loaded, or loading


def function_modes() -> tuple:
    """The calling thread's torch function-mode stack, bottom first (() before torch is loaded)."""
    if loaded_torch() is None:
        return ()
    from torch.overrides import _get_current_function_mode_stack
    return tuple(_get_current_function_mode_stack())


def put_back_function_modes(modes: tuple) -> bool:
    """Make the calling thread's function-mode stack `modes` (function_modes'): pop what is above the part they
    share, push back what is missing. Whether it had changed."""
    if loaded_torch() is None:
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


def _autocast_nesting(torch) -> int:
    """How many autocast blocks the calling thread is in (torch tells it only as it counts one up or down)."""
    nesting = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return nesting


def autocast_state() -> tuple:
    """The calling thread's autocast state: its cache flag, its nesting count and, for each device this torch has
    autocast for, (device, enabled, dtype name); the untouched one before torch is loaded."""
    torch = loaded_torch()
    if torch is None:
        return _UNTOUCHED[4]
    devices = tuple((device, torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device)).split(".")[-1])
                    for device in _AUTOCAST_DEVICES if torch.amp.autocast_mode.is_autocast_available(device))
    return torch.is_autocast_cache_enabled(), _autocast_nesting(torch), devices


def put_back_autocast(state: tuple) -> None:
    """Give the calling thread back autocast's `state` (autocast_state's) where it differs: a Ctrl-C landing as a
    `with torch.autocast` block starts (after its __enter__ set the flag and counted the block, where no __exit__
    follows) left autocast switched on or off and its nesting count raised, so that its cache was never cleared."""
    torch = loaded_torch()
    if torch is None:
        return
    cache, nesting, devices = state
    for device, enabled, dtype in devices:
        if not torch.amp.autocast_mode.is_autocast_available(device):
            continue
        if torch.is_autocast_enabled(device) != enabled:
            torch.set_autocast_enabled(device, enabled)
        if torch.get_autocast_dtype(device) != getattr(torch, dtype):
            torch.set_autocast_dtype(device, getattr(torch, dtype))
    now = _autocast_nesting(torch)
    while now > nesting:
        now = torch.autocast_decrement_nesting()
        if now == 0:
            torch.clear_autocast_cache()  # as leaving the outermost block does
    while now < nesting:
        now = torch.autocast_increment_nesting()
    if torch.is_autocast_cache_enabled() != cache:
        torch.set_autocast_cache_enabled(cache)


def torch_state() -> tuple:
    """The calling thread's grad mode, function-mode stack, the default device a `with torch.device` keeps
    (torch.utils._device's CURRENT_DEVICE), torch.set_default_device's, and its autocast state. mmgen never enters
    inference mode or sets a default device (it only takes its caller's off for a call: suspend_callers_modes), so
    it has none of theirs to give back."""
    torch = loaded_torch()
    if torch is None:
        return _UNTOUCHED
    device = sys.modules.get("torch.utils._device")
    return (torch.is_grad_enabled(), function_modes(), None if device is None else device.CURRENT_DEVICE,
            getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None), autocast_state())


def put_back_torch_state(state: tuple) -> None:
    """Give the calling thread back `state` (torch_state's) where it differs; without torch loaded, nothing."""
    torch = loaded_torch()
    if torch is None:
        return
    grad, modes, current_device, device_context, autocast = state
    if torch.is_grad_enabled() != grad:
        torch._C._set_grad_enabled(grad)
    if put_back_function_modes(modes) and (device := sys.modules.get("torch.utils._device")) is not None:
        device.CURRENT_DEVICE = current_device  # a module global: touched only when this thread's stack was wrong
    if getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None) is not device_context:
        torch._GLOBAL_DEVICE_CONTEXT.device_context = device_context
    put_back_autocast(autocast)


def suspend_callers_modes() -> None:
    """Take the caller's modes off the calling thread for one mmgen call: its default device — the device mode on
    its function-mode stack (a `with torch.device`, or torch.set_default_device's) and torch.set_default_device's
    device — and its autocast, on every device, leaving its other modes (a profiler's, a FlopCounterMode) in force.
    mmgen makes its tensors on the device its settings name (the caller's `with torch.device("meta")` made them on
    meta: "TypeError: can't convert meta device type tensor to numpy"), in the precision they name and that its
    records say (the caller's `torch.autocast("cpu", dtype=torch.bfloat16)` made an fp32 run bf16). put_back_torch_state,
    given the torch_state taken before, gives them back. Without torch loaded, the caller has none: nothing."""
    torch = loaded_torch()
    if torch is None:
        return
    put_back_autocast(_UNTOUCHED[4])  # off on every device, torch's dtypes, no block entered: a fresh thread's
    device = sys.modules.get("torch.utils._device")
    if device is None:
        return
    modes = function_modes()
    others = tuple(mode for mode in modes if not isinstance(mode, device.DeviceContext))
    if len(others) != len(modes):
        put_back_function_modes(others)
        device.CURRENT_DEVICE = None  # a module global: touched only when this thread had a device mode
    if getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None) is not None:
        torch._GLOBAL_DEVICE_CONTEXT.device_context = None


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
