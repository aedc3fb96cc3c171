"""Training draws its scratch weights and its dropout from torch's global RNG (seeded from the run's seed, saved in
each checkpoint and put back on resume, so a resumed run is bitwise the run that never stopped). That RNG is its
caller's too: a program's `finetune` left it reseeded to the config's seed, so the program's own draws after the call
repeated from run to run whatever it had seeded. A call gives it back as it found it."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch


def callers_rng_kept(device: torch.device) -> AbstractContextManager:
    """torch's global CPU RNG and that of `device` (the one training runs on), as they are now, put back as the
    block ends, however it ends."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    module = torch.get_device_module(device.type)
    index = device.index if device.index is not None else getattr(module, "current_device", lambda: 0)()  # mps: 0
    return torch.random.fork_rng(devices=[index], device_type=device.type)
