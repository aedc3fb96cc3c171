"""The machine's memory: how much there is, and handing memory freed by torch back to the system between
sampling steps.

glibc keeps freed blocks in its heap for reuse; the activations of a U-Net come in many sizes, the kept pieces
fragment, and a process's peak creeps up from step to step (measured on the released MM-UNet's bf16 CPU
forward: 1.12 → 1.22 GB over 30 forwards). malloc_trim returns the free pages after each step, so the peak
stays at the first step's; the pages are faulted in again by the next step (measured: no slower). Where the C
library has no malloc_trim (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError, TypeError):
        return None


def release_freed_memory() -> bool:
    """Give the C heap's free pages back to the system; whether this C library can."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def physical_memory() -> int | None:
    """Bytes of RAM this machine has; None where the system does not say (Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
